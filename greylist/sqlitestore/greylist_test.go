package sqlitestore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/greymilter/greymilter/greylist"
)

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
