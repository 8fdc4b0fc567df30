package dnsbl

import (
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/clocktest"
	"github.com/greymilter/greymilter/resolver"
)

// newResolver returns a resolver on a fake clock asking servers.
func newResolver(t testing.TB, cfg resolver.Config, servers ...string) (*resolver.Resolver, *clocktest.Clock) {
	t.Helper()
	clock := clocktest.New(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	cfg.Servers = servers
	cfg.Clock = clock
	r, err := resolver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, clock
}

var blZones = []string{"testdata/a.bl.zone", "testdata/b.bl.zone", "testdata/c.bl.zone", "testdata/errors.bl.zone", "testdata/wl.zone", "testdata/refusals.wl.zone"}

func mustZones(tb testing.TB, specs ...string) []Zone {
	tb.Helper()
	zones := make([]Zone, len(specs))
	for i, s := range specs {
		z, err := ParseZone(s)
		if err != nil {
			tb.Fatal(err)
		}
		zones[i] = z
	}
	return zones
}
