package greylist

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// countingStore is a real store that counts the reads reaching it.
type countingStore struct {
	Store
	lookups, clients atomic.Int64
}

func (c *countingStore) Lookup(ctx context.Context, k Key) (Record, bool, error) {
	c.lookups.Add(1)
	return c.Store.Lookup(ctx, k)
}

func (c *countingStore) Client(ctx context.Context, client string) (ClientRecord, bool, error) {
	c.clients.Add(1)
	return c.Store.Client(ctx, client)
}

func TestKnownIsServedFromMemory(t *testing.T) {
	store := &countingStore{Store: mustOpen(t, ":memory:")}
	g := &Greylist{Store: store, Rules: testRules, AutoWhitelist: 1}
	ctx := context.Background()
	k := key(1)
	if st, _ := g.Known(ctx, k, t0); st != Unknown {
		t.Fatalf("new triplet: %v", st)
	}
	g.Attempt(ctx, k, t0)
	if res, _ := g.Attempt(ctx, k, t0.Add(6*time.Minute)); res.Outcome != Passed {
		t.Fatalf("retry: %v", res.Outcome)
	}
	before := store.lookups.Load()
	for i := range 100 {
		if st, err := g.Known(ctx, k, t0.Add(time.Duration(i)*time.Minute)); st != KnownTriplet || err != nil {
			t.Fatalf("known: %v %v", st, err)
		}
	}
	if n := store.lookups.Load() - before; n != 0 {
		t.Errorf("%d database reads for a triplet that passed, want 0", n)
	}
	// Another triplet of the auto-whitelisted client: one read, then memory.
	other := Key{Client: k.Client, Sender: "x@example.org", Recipient: "y@example.net"}
	for range 10 {
		if st, _ := g.Known(ctx, other, t0.Add(time.Hour)); st != AutoWhitelisted {
			t.Fatalf("auto-whitelisted client: %v", st)
		}
	}
	if n := store.clients.Load(); n != 2 { // the first Known above, and the first of these
		t.Errorf("%d client reads, want 2", n)
	}
	// Past max-age the cache does not vouch for anyone.
	if st, _ := g.Known(ctx, k, t0.Add(testRules.MaxAge+24*time.Hour)); st != Unknown {
		t.Errorf("after max-age: %v, want unknown", st)
	}
}

func TestPassCacheIsBounded(t *testing.T) {
	c := newPassCache(10)
	for i := range 100 {
		c.putTriplet(key(i), t0)
	}
	if len(c.triplets) != 10 {
		t.Errorf("cache holds %d entries, want 10", len(c.triplets))
	}
	if _, ok := c.triplet(key(99)); !ok {
		t.Error("the newest entry was evicted")
	}
}
