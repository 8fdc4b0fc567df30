package dnsbl

import (
	"github.com/greymilter/greymilter/dnstest"

	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newResolver returns a resolver on a fake clock asking servers.
func newResolver(t testing.TB, cfg Config, servers ...string) (*Resolver, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg.Servers = servers
	cfg.Clock = clock
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, clock
}

var blZones = []string{"testdata/a.bl.zone", "testdata/b.bl.zone", "testdata/c.bl.zone", "testdata/errors.bl.zone", "testdata/wl.zone"}

func startBench(tb testing.TB) string { return dnstest.Start(tb, blZones...).Addr() }

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
