package checks

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/resolver"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// newResolver starts a DNS server with the zones and returns the project's
// caching resolver asking it.
func newResolver(t *testing.T, zones ...string) (*resolver.Resolver, *dnstest.Server) {
	t.Helper()
	srv := dnstest.Start(t, zones...)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r, srv
}
