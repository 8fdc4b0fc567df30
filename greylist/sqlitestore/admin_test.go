package sqlitestore

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/storetest"
)

func TestAdminConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		storetest.RunAdmin(t, func(t *testing.T) greylist.Store { return mustOpen(t, filepath.Join(t.TempDir(), "g.db")) })
	})
	t.Run("memory", func(t *testing.T) {
		storetest.RunAdmin(t, func(t *testing.T) greylist.Store { return mustOpen(t, ":memory:") })
	})
}

// A runtime whitelist entry survives a restart, and a purge forgets it
// once expired.
func TestWhitelistSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	ctx := context.Background()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	forever := greylist.WhitelistEntry{Network: netip.MustParsePrefix("192.0.2.0/24"), Added: t0}
	brief := greylist.WhitelistEntry{Network: netip.MustParsePrefix("198.51.100.1/32"), Added: t0, Expires: t0.Add(time.Hour)}
	for _, e := range []greylist.WhitelistEntry{forever, brief} {
		if err := s.AddWhitelist(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	if _, ok := s.Whitelisted(netip.MustParseAddr("192.0.2.9"), t0); !ok {
		t.Error("entry lost in a restart")
	}
	if _, ok := s.Whitelisted(netip.MustParseAddr("198.51.100.1"), t0); !ok {
		t.Error("entry with an expiry lost in a restart")
	}
	if _, err := s.Purge(ctx, testRules, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	es, err := s.Whitelist(ctx)
	if err != nil || len(es) != 1 || es[0].Network != forever.Network {
		t.Errorf("after a purge past the expiry: %+v, %v", es, err)
	}
}
