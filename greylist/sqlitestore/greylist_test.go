package sqlitestore

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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

func TestHealthFailsWhenTheStoreCannotWrite(t *testing.T) {
	store, err := Open(filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	g := &greylist.Greylist{Store: store, Rules: testRules, Metrics: greylist.NewMetrics()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := g.Attempt(ctx, key(1), t0); err != nil {
		t.Fatal(err)
	}
	if err := g.Health(ctx); err != nil {
		t.Fatalf("health of an open store: %v", err)
	}
	store.Close()
	if _, err := g.Attempt(ctx, key(2), t0); err == nil {
		t.Fatal("attempt on a closed store succeeded")
	}
	if err := g.Health(ctx); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("health of a closed store: %v", err)
	}
	// A store that cannot be pinged is judged by its latest write.
	g.Store = struct{ greylist.Store }{store}
	if err := g.Health(ctx); err == nil || !strings.Contains(err.Error(), "latest write failed") {
		t.Errorf("health after a failed write: %v", err)
	}
}

func TestMetricsCountOutcomes(t *testing.T) {
	g := &greylist.Greylist{Store: mustOpen(t, ":memory:"), Rules: testRules, Metrics: greylist.NewMetrics()}
	ctx := context.Background()
	g.Attempt(ctx, key(1), t0)
	g.Attempt(ctx, key(1), t0.Add(time.Minute))
	g.Attempt(ctx, key(1), t0.Add(7*time.Minute))
	g.Attempt(ctx, key(2), t0)
	m := g.Metrics
	counts := `
# HELP greymilter_greylist_triplets_greylisted_total Triplets greylisted: first attempts of new triplets, and of triplets started again after the retry window.
# TYPE greymilter_greylist_triplets_greylisted_total counter
greymilter_greylist_triplets_greylisted_total 2
# HELP greymilter_greylist_triplets_passed_total Triplets that passed greylisting: retried after their delay, within the retry window.
# TYPE greymilter_greylist_triplets_passed_total counter
greymilter_greylist_triplets_passed_total 1
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(counts), "greymilter_greylist_triplets_greylisted_total", "greymilter_greylist_triplets_passed_total"); err != nil {
		t.Error(err)
	}
	want := `
# HELP greymilter_greylist_delay_seconds Real delay of triplets that passed greylisting: from their first deferred attempt to the retry that passed.
# TYPE greymilter_greylist_delay_seconds histogram
greymilter_greylist_delay_seconds_bucket{le="300"} 0
greymilter_greylist_delay_seconds_bucket{le="360"} 0
greymilter_greylist_delay_seconds_bucket{le="420"} 1
greymilter_greylist_delay_seconds_bucket{le="600"} 1
greymilter_greylist_delay_seconds_bucket{le="900"} 1
greymilter_greylist_delay_seconds_bucket{le="1800"} 1
greymilter_greylist_delay_seconds_bucket{le="3600"} 1
greymilter_greylist_delay_seconds_bucket{le="7200"} 1
greymilter_greylist_delay_seconds_bucket{le="14400"} 1
greymilter_greylist_delay_seconds_bucket{le="43200"} 1
greymilter_greylist_delay_seconds_bucket{le="86400"} 1
greymilter_greylist_delay_seconds_bucket{le="172800"} 1
greymilter_greylist_delay_seconds_bucket{le="+Inf"} 1
greymilter_greylist_delay_seconds_sum 420
greymilter_greylist_delay_seconds_count 1
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "greymilter_greylist_delay_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m, "greymilter_store_operation_seconds"); n != 4 {
		t.Errorf("%d store operation series, want attempt, lookup, client, purge", n)
	}
}
