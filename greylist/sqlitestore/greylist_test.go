package sqlitestore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// countingStore is a real store that counts the touches reaching it.
type countingStore struct {
	greylist.Store
	touches atomic.Int64
}

func (c *countingStore) Touch(k greylist.Key, now time.Time) {
	c.touches.Add(1)
	c.Store.Touch(k, now)
}

func TestKnownTouchesAtMostHourly(t *testing.T) {
	store := &countingStore{Store: mustOpen(t, ":memory:")}
	g := &greylist.Greylist{Store: store, Rules: testRules, AutoWhitelist: 1}
	ctx := context.Background()
	k := key(1)
	if st, _ := g.Known(ctx, k, t0); st != greylist.Unknown {
		t.Fatalf("new triplet: %v", st)
	}
	g.Attempt(ctx, k, t0)
	if res, _ := g.Attempt(ctx, k, t0.Add(6*time.Minute)); res.Outcome != greylist.Passed {
		t.Fatalf("retry: %v", res.Outcome)
	}
	// Mail every minute for three hours: a few touches, not 180.
	for i := range 180 {
		if st, err := g.Known(ctx, k, t0.Add(time.Duration(7+i)*time.Minute)); st != greylist.KnownTriplet || err != nil {
			t.Fatalf("known: %v %v", st, err)
		}
		waitIdle(t, store.Store.(*Store))
	}
	if n := store.touches.Load(); n < 2 || n > 4 {
		t.Errorf("%d touches in three hours of mail, want about one an hour", n)
	}
	// Another triplet of the auto-whitelisted client.
	other := greylist.Key{Client: k.Client, Sender: "x@example.org", Recipient: "y@example.net"}
	if st, _ := g.Known(ctx, other, t0.Add(4*time.Hour)); st != greylist.AutoWhitelisted {
		t.Fatalf("auto-whitelisted client: %v", st)
	}
	// Past max-age nobody is vouched for.
	if st, _ := g.Known(ctx, k, t0.Add(testRules.MaxAge+24*time.Hour)); st != greylist.Unknown {
		t.Errorf("after max-age: %v, want unknown", st)
	}
}

// waitIdle waits until the writer has run the touches queued: once the
// writer took them all, a no-op queued behind commits after them.
func waitIdle(t *testing.T, s *Store) {
	t.Helper()
	for len(s.touch) > 0 {
		time.Sleep(time.Millisecond)
	}
	if err := s.AddCounts(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

// TestPassesCountedOnlyForAutoWhitelisting: with auto-whitelisting off a
// pass writes the triplet alone; with it on the client's passes grow.
func TestPassesCountedOnlyForAutoWhitelisting(t *testing.T) {
	for _, awl := range []int{0, 5} {
		store := mustOpen(t, ":memory:")
		g := &greylist.Greylist{Store: store, Rules: testRules, AutoWhitelist: awl}
		ctx := context.Background()
		k := key(1)
		g.Attempt(ctx, k, t0)
		if res, err := g.Attempt(ctx, k, t0.Add(6*time.Minute)); res.Outcome != greylist.Passed || err != nil {
			t.Fatalf("awl %d: retry: %v %v", awl, res.Outcome, err)
		}
		c, found, err := store.Client(ctx, k.Client)
		if err != nil {
			t.Fatal(err)
		}
		if counted := found && c.Passes == 1; counted != (awl > 0) {
			t.Errorf("auto-whitelist %d: client record %+v (found %v)", awl, c, found)
		}
	}
}
