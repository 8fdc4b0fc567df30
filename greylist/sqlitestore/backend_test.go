package sqlitestore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/greylist"
)

// TestOpenPicksSQLite: paths and :memory: open this backend through
// greylist.Open; a URL of an unknown scheme is refused by name.
func TestOpenPicksSQLite(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{":memory:", filepath.Join(t.TempDir(), "g.db")} {
		s, err := greylist.Open(ctx, dsn, greylist.Options{})
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if _, ok := s.(*Store); !ok {
			t.Errorf("%s: opened a %T", dsn, s)
		}
		if _, ok := s.(greylist.Counter); !ok {
			t.Errorf("%s: the SQLite store keeps no counts", dsn)
		}
		s.Close()
	}
	_, err := greylist.Open(ctx, "mysql://db.example/grey", greylist.Options{})
	if err == nil || !strings.Contains(err.Error(), "mysql://") || !strings.Contains(err.Error(), "sqlite") {
		t.Errorf("unknown scheme: %v", err)
	}
}
