package sqlitestore

import (
	"context"
	"strings"

	"github.com/greymilter/greymilter/greylist"
)

// SQLite is the embedded default: any DSN that is not a URL is a file
// path, or ":memory:".
func init() {
	greylist.Register(greylist.Backend{
		Name:  "sqlite",
		Match: func(dsn string) bool { return !strings.Contains(dsn, "://") },
		Open: func(_ context.Context, dsn string, opts greylist.Options) (greylist.Store, error) {
			return OpenWith(dsn, Options{Log: opts.Log, Recover: opts.Recover, WriteTest: opts.WriteTest})
		},
	})
}
