package sqlitestore

import (
	"path/filepath"
	"testing"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/storetest"
)

func TestConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) greylist.Store { return mustOpen(t, filepath.Join(t.TempDir(), "g.db")) })
	})
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) greylist.Store { return mustOpen(t, ":memory:") })
	})
}
