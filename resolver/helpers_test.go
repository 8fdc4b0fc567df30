package resolver

import (
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/clocktest"
)

// newResolver returns a resolver on a fake clock asking servers.
func newResolver(t testing.TB, cfg Config, servers ...string) (*Resolver, *clocktest.Clock) {
	t.Helper()
	clock := clocktest.New(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	cfg.Servers = servers
	cfg.Clock = clock
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, clock
}
