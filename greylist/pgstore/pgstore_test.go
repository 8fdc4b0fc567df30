package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/storetest"
	"github.com/greymilter/greymilter/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open opens a store on a new database of the shared server.
func open(t *testing.T, o greylist.Options) *Store {
	t.Helper()
	return openDSN(t, pgtest.Shared(t).NewDatabase(t), o)
}

func openDSN(t *testing.T, dsn string, o greylist.Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// conformanceTimeout bounds operations in the conformance suite, which
// tests behaviour, not time: generous, for a loaded machine.
const conformanceTimeout = 10 * time.Second

func TestConformance(t *testing.T) {
	t.Run("cached", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) greylist.Store {
			return open(t, greylist.Options{Timeout: conformanceTimeout, AutoWhitelist: 1})
		})
	})
	t.Run("uncached", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) greylist.Store {
			return open(t, greylist.Options{Timeout: conformanceTimeout, CacheTTL: -1})
		})
	})
}

func TestAdminConformance(t *testing.T) {
	t.Run("cached", func(t *testing.T) {
		storetest.RunAdmin(t, func(t *testing.T) greylist.Store { return open(t, greylist.Options{AutoWhitelist: 1}) })
	})
	t.Run("uncached", func(t *testing.T) {
		storetest.RunAdmin(t, func(t *testing.T) greylist.Store { return open(t, greylist.Options{CacheTTL: -1}) })
	})
}
