package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
)

func TestSeedLeavesLiveAndExpiredTriplets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.db")
	if err := seed(path, 300, 200, 16); err != nil {
		t.Fatal(err)
	}
	store, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	for i, want := range map[int64]bool{0: false, 199: false, 200: true, 499: true} {
		rec, found, err := store.Lookup(ctx, key(i))
		if err != nil || !found || rec.Passed() != want {
			t.Errorf("triplet %d: found %v, passed %v, err %v; want passed %v", i, found, rec.Passed(), err, want)
		}
	}
	st, err := store.Purge(ctx, greylist.DefaultRules, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Triplets+st.Unverified != 200 {
		t.Errorf("purge removed %+v, want the 200 expired triplets", st)
	}
}
