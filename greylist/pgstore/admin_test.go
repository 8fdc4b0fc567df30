package pgstore

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/internal/pgtest"
)

// A runtime whitelist entry added at one host is in force there at once,
// and at another host sharing the database once its copy is refreshed;
// decisions never wait for the refresh.
func TestWhitelistReachesOtherHosts(t *testing.T) {
	old := whitelistRefresh
	whitelistRefresh = 200 * time.Millisecond
	t.Cleanup(func() { whitelistRefresh = old })
	dsn := pgtest.Shared(t).NewDatabase(t)
	a, b := openDSN(t, dsn, greylist.Options{}), openDSN(t, dsn, greylist.Options{})
	addr := netip.MustParseAddr("192.0.2.7")
	now := time.Now()
	if _, ok := b.Whitelisted(addr, now); ok {
		t.Fatal("whitelisted before any entry")
	}
	if err := a.AddWhitelist(context.Background(), greylist.WhitelistEntry{Network: netip.MustParsePrefix("192.0.2.0/24"), Added: now}); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Whitelisted(addr, now); !ok {
		t.Fatal("not in force at once at the host that added it")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		start := time.Now()
		_, ok := b.Whitelisted(addr, now)
		if took := time.Since(start); took > 50*time.Millisecond {
			t.Errorf("Whitelisted took %v: it waited for the database", took)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the other host never saw the entry")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A purge forgets expired runtime whitelist entries and keeps the others.
func TestPurgeExpiredWhitelist(t *testing.T) {
	s := open(t, greylist.Options{})
	ctx := context.Background()
	now := time.Now()
	for _, e := range []greylist.WhitelistEntry{
		{Network: netip.MustParsePrefix("192.0.2.0/24"), Added: now},
		{Network: netip.MustParsePrefix("198.51.100.1/32"), Added: now, Expires: now.Add(time.Hour)},
	} {
		if err := s.AddWhitelist(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Purge(ctx, greylist.DefaultRules, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	es, err := s.Whitelist(ctx)
	if err != nil || len(es) != 1 || es[0].Network.String() != "192.0.2.0/24" {
		t.Errorf("after a purge past the expiry: %+v, %v", es, err)
	}
}
