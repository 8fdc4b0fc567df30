package engine

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
)

// The runtime whitelist passes a client of an active entry, not one of an
// expired entry, and costs a decision it does not settle no allocation.
func TestRuntimeWhitelist(t *testing.T) {
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, e := range []greylist.WhitelistEntry{
		{Network: netip.MustParsePrefix("192.0.2.0/24"), Added: now, Expires: now.Add(time.Hour)},
		{Network: netip.MustParsePrefix("198.51.100.0/24"), Added: now, Expires: now.Add(-time.Minute)},
	} {
		if err := store.AddWhitelist(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	step := &RuntimeWhitelist{Entries: store}
	run := func(addr string) (*Decision, bool) {
		d := &Decision{Req: &Request{ClientAddr: netip.MustParseAddr(addr)}, Now: now}
		settled, err := step.Run(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		return d, settled
	}
	if d, ok := run("192.0.2.9"); !ok || d.Verdict.Reason != "runtime-whitelist" || len(d.attrs) != 2 || d.attrs[0].Value.String() != "192.0.2.0/24" {
		t.Errorf("active entry: settled %v, %+v %v", ok, d.Verdict, d.attrs)
	}
	if _, ok := run("198.51.100.9"); ok {
		t.Error("expired entry passed its client")
	}
	d := &Decision{Req: &Request{ClientAddr: netip.MustParseAddr("203.0.113.9")}, Now: now}
	if n := testing.AllocsPerRun(100, func() { step.Run(ctx, d) }); n != 0 {
		t.Errorf("a client on no entry: %v allocations, want 0", n)
	}
}
