// Package storetest is the conformance suite of greylist stores: every
// behaviour of a store that greylisting relies on, run against each
// backend from that backend's tests.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// Opener returns a new, empty store, closed when the test ends.
type Opener func(t *testing.T) greylist.Store

// T0 is the suite's clock: a fixed time, so that rules are tested to the
// second whatever the machine's clock says.
var T0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Rules are the suite's timing rules.
var Rules = greylist.Rules{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxWait: 12 * time.Hour, MaxAge: 35 * 24 * time.Hour, PurgeUnverified: 48 * time.Hour}

// Key returns the i-th test triplet; 250 client subnets take turns.
func Key(i int) greylist.Key {
	return greylist.Key{Client: fmt.Sprintf("192.0.%d.0/24", i%250), Sender: fmt.Sprintf("s%d@example.org", i), Recipient: "r@example.net"}
}

// Run runs the suite on stores from open, each subtest on a store of its
// own, in parallel.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s greylist.Store)
	}{
		{"Lifecycle", testLifecycle},
		{"RetryWindow", testRetryWindow},
		{"Penalty", testPenalty},
		{"RulesPerAttempt", testRulesPerAttempt},
		{"ConcurrentAttempts", testConcurrentAttempts},
		{"PassesCountedOnlyForAutoWhitelisting", testPassesCounted},
		{"AutoWhitelist", testAutoWhitelist},
		{"KnownTouchesAtMostHourly", testKnownTouches},
		{"Purge", testPurge},
		{"PurgeManyInBatches", testPurgeMany},
		{"CountsAndSummary", testCountsAndSummary},
		{"RetriesAndPing", testRetriesAndPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// Attempt runs an attempt of k at at under Rules, failing t on error.
func Attempt(t *testing.T, s greylist.Store, k greylist.Key, at time.Time) greylist.Result {
	t.Helper()
	return attemptWith(t, s, Rules, k, at)
}

func attemptWith(t *testing.T, s greylist.Store, rules greylist.Rules, k greylist.Key, at time.Time) greylist.Result {
	t.Helper()
	res, err := s.Attempt(context.Background(), k, rules, at)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// testLifecycle: first attempt, early retry, pass, known; what is stored.
func testLifecycle(t *testing.T, s greylist.Store) {
	ctx := context.Background()
	k := Key(1)
	if _, found, err := s.Lookup(ctx, k); found || err != nil {
		t.Fatalf("Lookup of an unknown triplet: found=%v err=%v", found, err)
	}
	steps := []struct {
		at      time.Duration
		want    greylist.Outcome
		wait    time.Duration
		delayed time.Duration
	}{
		{0, greylist.New, 5 * time.Minute, 0},
		{time.Minute, greylist.EarlyRetry, 4 * time.Minute, 0},
		{6 * time.Minute, greylist.Passed, 0, 6 * time.Minute},
		{7 * time.Minute, greylist.Known, 0, 0},
	}
	for _, st := range steps {
		res := Attempt(t, s, k, T0.Add(st.at))
		if res.Outcome != st.want || res.Wait != st.wait || res.Delayed != st.delayed || res.Restarted {
			t.Fatalf("at +%v: %v wait %v delayed %v restarted %v, want %v wait %v delayed %v", st.at,
				res.Outcome, res.Wait, res.Delayed, res.Restarted, st.want, st.wait, st.delayed)
		}
	}
	rec, found, err := s.Lookup(ctx, k)
	if err != nil || !found {
		t.Fatalf("Lookup: %v %v", found, err)
	}
	if !rec.FirstSeen.Equal(T0) || !rec.PassedAt.Equal(T0.Add(6*time.Minute)) || rec.Attempts != 3 {
		t.Errorf("stored record %+v", rec)
	}
	c, found, err := s.Client(ctx, k.Client)
	if err != nil || !found || c.Passes != 1 || !c.LastSeen.Equal(T0.Add(6*time.Minute)) {
		t.Errorf("client record %+v found=%v err=%v, want 1 pass at +6m", c, found, err)
	}
	if _, found, _ := s.Lookup(ctx, Key(2)); found {
		t.Error("Lookup of another, unknown, triplet found something")
	}
	if _, found, _ := s.Client(ctx, Key(2).Client); found {
		t.Error("Client of an unknown client found something")
	}
}

// testRetryWindow: a triplet that never passed starts again after the
// retry window; one that passed and went stale past max-age too.
func testRetryWindow(t *testing.T, s greylist.Store) {
	k := Key(3)
	Attempt(t, s, k, T0)
	res := Attempt(t, s, k, T0.Add(Rules.RetryWindow+time.Minute))
	if res.Outcome != greylist.New || !res.Restarted || res.Wait != Rules.Delay {
		t.Fatalf("after the retry window: %+v, want a restarted new attempt", res)
	}
	if res := Attempt(t, s, k, T0.Add(Rules.RetryWindow+7*time.Minute)); res.Outcome != greylist.Passed || res.Delayed != 6*time.Minute {
		t.Fatalf("retry after the restart: %+v, want passed after 6m", res)
	}
	stale := T0.Add(Rules.RetryWindow + 7*time.Minute + Rules.MaxAge + time.Hour)
	if res := Attempt(t, s, k, stale); res.Outcome != greylist.New || !res.Restarted {
		t.Fatalf("passed but unseen past max-age: %+v, want a restarted new attempt", res)
	}
}

// testPenalty: retries before the delay add the penalty, up to max-wait.
func testPenalty(t *testing.T, s greylist.Store) {
	rules := Rules
	rules.Penalty = 2 * time.Minute
	rules.MaxWait = 8 * time.Minute
	k := Key(4)
	attemptWith(t, s, rules, k, T0)
	// Each early retry makes the next wait longer: 5m+2m, 5m+4m capped at 8m.
	if res := attemptWith(t, s, rules, k, T0.Add(time.Minute)); res.Outcome != greylist.EarlyRetry || res.Wait != 6*time.Minute {
		t.Fatalf("first early retry: %+v, want wait 6m (7m - 1m)", res)
	}
	if res := attemptWith(t, s, rules, k, T0.Add(2*time.Minute)); res.Outcome != greylist.EarlyRetry || res.Wait != 6*time.Minute {
		t.Fatalf("second early retry: %+v, want wait 6m (capped 8m - 2m)", res)
	}
	if res := attemptWith(t, s, rules, k, T0.Add(7*time.Minute)); res.Outcome != greylist.EarlyRetry {
		t.Fatalf("retry after the plain delay but before the penalties: %+v, want early retry", res)
	}
	if res := attemptWith(t, s, rules, k, T0.Add(8*time.Minute)); res.Outcome != greylist.Passed {
		t.Fatalf("retry after max-wait: %+v, want passed", res)
	}
}

// testRulesPerAttempt: the rules come with each attempt (a rules-file
// line gives some mail its own delay and retry window), and the stored
// record keeps only when the triplet was first seen, so the delay and
// window in force at each retry decide.
func testRulesPerAttempt(t *testing.T, s greylist.Store) {
	short := Rules
	short.Delay, short.RetryWindow = time.Minute, 10*time.Minute
	fast, slow := Key(5), Key(6)
	if res := attemptWith(t, s, short, fast, T0); res.Outcome != greylist.New || res.Wait != time.Minute {
		t.Fatalf("first attempt under a 1m delay: %+v", res)
	}
	Attempt(t, s, slow, T0)
	if res := attemptWith(t, s, short, fast, T0.Add(61*time.Second)); res.Outcome != greylist.Passed || res.Delayed != 61*time.Second {
		t.Fatalf("retry after the 1m delay: %+v, want passed", res)
	}
	if res := Attempt(t, s, slow, T0.Add(61*time.Second)); res.Outcome != greylist.EarlyRetry || res.Wait != 5*time.Minute-61*time.Second {
		t.Fatalf("retry of the other triplet under the 5m delay: %+v, want an early retry", res)
	}
	// The same waiting triplet judged by the short rules later: past
	// their 10m window it starts again; under the 2d window it passes.
	if res := attemptWith(t, s, short, slow, T0.Add(11*time.Minute)); res.Outcome != greylist.New || !res.Restarted {
		t.Fatalf("past the short retry window: %+v, want a restarted new attempt", res)
	}
	if res := Attempt(t, s, slow, T0.Add(17*time.Minute)); res.Outcome != greylist.Passed {
		t.Fatalf("after the restart, under the 5m delay: %+v, want passed", res)
	}
}

// testConcurrentAttempts: many attempts of one new triplet at once; exactly
// one is its first, and every one is counted.
func testConcurrentAttempts(t *testing.T, s greylist.Store) {
	const n = 64
	var wg sync.WaitGroup
	outcomes := make(chan greylist.Outcome, n)
	for range n {
		wg.Go(func() {
			res, err := s.Attempt(context.Background(), Key(7), Rules, T0)
			if err != nil {
				t.Error(err)
				return
			}
			outcomes <- res.Outcome
		})
	}
	wg.Wait()
	close(outcomes)
	count := map[greylist.Outcome]int{}
	for o := range outcomes {
		count[o]++
	}
	if count[greylist.New] != 1 || count[greylist.EarlyRetry] != n-1 {
		t.Errorf("outcomes %v, want exactly one new and %d early retries", count, n-1)
	}
	rec, _, _ := s.Lookup(context.Background(), Key(7))
	if rec.Attempts != n {
		t.Errorf("attempts = %d, want %d", rec.Attempts, n)
	}
}

// testPassesCounted: with auto-whitelisting off a pass writes the triplet
// alone; with it on the client's passes grow.
func testPassesCounted(t *testing.T, s greylist.Store) {
	for i, awl := range []int{0, 5} {
		g := &greylist.Greylist{Store: s, Rules: Rules, AutoWhitelist: awl}
		ctx := context.Background()
		k := Key(10 + i)
		g.Attempt(ctx, k, T0)
		if res, err := g.Attempt(ctx, k, T0.Add(6*time.Minute)); res.Outcome != greylist.Passed || err != nil {
			t.Fatalf("awl %d: retry: %v %v", awl, res.Outcome, err)
		}
		c, found, err := s.Client(ctx, k.Client)
		if err != nil {
			t.Fatal(err)
		}
		if counted := found && c.Passes == 1; counted != (awl > 0) {
			t.Errorf("auto-whitelist %d: client record %+v (found %v)", awl, c, found)
		}
	}
}

// testAutoWhitelist: a client's passes count distinct triplets; at the
// threshold it is auto-whitelisted for any triplet.
func testAutoWhitelist(t *testing.T, s greylist.Store) {
	g := &greylist.Greylist{Store: s, Rules: Rules, AutoWhitelist: 3}
	ctx := context.Background()
	client := Key(20).Client
	triplet := func(i int) greylist.Key {
		return greylist.Key{Client: client, Sender: fmt.Sprintf("a%d@example.org", i), Recipient: "r@example.net"}
	}
	for i := range 3 {
		k := triplet(i)
		if st, err := g.Known(ctx, triplet(99), T0.Add(time.Hour)); st != greylist.Unknown || err != nil {
			t.Fatalf("after %d passes: %v %v, want unknown", i, st, err)
		}
		g.Attempt(ctx, k, T0)
		g.Attempt(ctx, k, T0.Add(6*time.Minute))
		// A known triplet passing again is not a new pass.
		g.Attempt(ctx, k, T0.Add(7*time.Minute))
		c, _, err := s.Client(ctx, client)
		if err != nil || c.Passes != i+1 {
			t.Fatalf("after %d triplets passed: %+v %v", i+1, c, err)
		}
	}
	if st, err := g.Known(ctx, triplet(99), T0.Add(time.Hour)); st != greylist.AutoWhitelisted || err != nil {
		t.Fatalf("after 3 passes: %v %v, want auto-whitelisted", st, err)
	}
}

// testKnownTouchesAtMostHourly: a known triplet's mail keeps it alive with
// about one touch an hour, not one per mail.
func testKnownTouches(t *testing.T, s greylist.Store) {
	store := &countingStore{Store: s}
	g := &greylist.Greylist{Store: store, Rules: Rules, AutoWhitelist: 1}
	ctx := context.Background()
	k := Key(30)
	if st, _ := g.Known(ctx, k, T0); st != greylist.Unknown {
		t.Fatalf("new triplet: %v", st)
	}
	g.Attempt(ctx, k, T0)
	if res, _ := g.Attempt(ctx, k, T0.Add(6*time.Minute)); res.Outcome != greylist.Passed {
		t.Fatalf("retry: %v", res.Outcome)
	}
	// Mail every minute for three hours: a few touches, not 180.
	for i := range 180 {
		now := T0.Add(time.Duration(7+i) * time.Minute)
		before := store.touches.Load()
		if st, err := g.Known(ctx, k, now); st != greylist.KnownTriplet || err != nil {
			t.Fatalf("known: %v %v", st, err)
		}
		if store.touches.Load() != before {
			waitSeen(t, s, k, now)
		}
	}
	if n := store.touches.Load(); n < 2 || n > 4 {
		t.Errorf("%d touches in three hours of mail, want about one an hour", n)
	}
	// Another triplet of the auto-whitelisted client.
	other := greylist.Key{Client: k.Client, Sender: "x@example.org", Recipient: "y@example.net"}
	if st, _ := g.Known(ctx, other, T0.Add(4*time.Hour)); st != greylist.AutoWhitelisted {
		t.Fatalf("auto-whitelisted client: %v", st)
	}
	// Past max-age nobody is vouched for.
	if st, _ := g.Known(ctx, k, T0.Add(Rules.MaxAge+24*time.Hour)); st != greylist.Unknown {
		t.Errorf("after max-age: %v, want unknown", st)
	}
}

// countingStore is a real store that counts the touches reaching it.
type countingStore struct {
	greylist.Store
	touches atomic.Int64
}

func (c *countingStore) Touch(k greylist.Key, now time.Time) {
	c.touches.Add(1)
	c.Store.Touch(k, now)
}

// waitSeen waits until a touch of k at seen shows: touches are written in
// the background.
func waitSeen(t *testing.T, s greylist.Store, k greylist.Key, seen time.Time) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, _, err := s.Lookup(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.LastSeen.Before(seen) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a touch at %v does not show after 5s: %+v", seen, rec)
		}
		time.Sleep(time.Millisecond)
	}
}

// testPurge: max-age forgets triplets and clients not seen, touched ones
// stay, unverified triplets go after purge-unverified.
func testPurge(t *testing.T, s greylist.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	// Passed long ago, never seen since: expired by max-age.
	Attempt(t, s, Key(1), T0)
	Attempt(t, s, Key(1), T0.Add(10*time.Minute))
	// Passed long ago but touched recently: kept.
	Attempt(t, s, Key(2), T0)
	Attempt(t, s, Key(2), T0.Add(10*time.Minute))
	s.Touch(Key(2), T0.Add(30*day))
	// Never passed, first seen 3 days before the purge: unverified.
	Attempt(t, s, Key(3), T0.Add(33*day))
	// The same, retried too early once: unverified, but retried.
	Attempt(t, s, Key(5), T0.Add(33*day))
	Attempt(t, s, Key(5), T0.Add(33*day+time.Minute))
	// Never passed, recent: kept.
	Attempt(t, s, Key(4), T0.Add(36*day-time.Hour))

	st, err := s.Purge(ctx, Rules, T0.Add(36*day))
	if err != nil {
		t.Fatal(err)
	}
	if st.Triplets != 1 || st.Unverified != 2 || st.NeverRetried != 1 || st.Clients != 1 {
		t.Errorf("purge stats %+v, want 1 expired and 2 unverified triplets (1 never retried), 1 client", st)
	}
	for i, want := range map[int]bool{1: false, 2: true, 3: false, 4: true, 5: false} {
		if _, found, _ := s.Lookup(ctx, Key(i)); found != want {
			t.Errorf("triplet %d found=%v after purge, want %v", i, found, want)
		}
	}
	if _, found, _ := s.Client(ctx, Key(1).Client); found {
		t.Error("client of an expired triplet kept")
	}
	if _, found, _ := s.Client(ctx, Key(2).Client); !found {
		t.Error("touched client purged")
	}
}

// testPurgeMany: a purge larger than any backend's batch takes everything.
func testPurgeMany(t *testing.T, s greylist.Store) {
	const n = 4500
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := s.Attempt(context.Background(), Key(i), Rules, T0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st, err := s.Purge(context.Background(), Rules, T0.Add(3*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Unverified != n {
		t.Errorf("purged %d unverified, want %d", st.Unverified, n)
	}
	if _, found, _ := s.Lookup(context.Background(), Key(n-1)); found {
		t.Error("a purged triplet is still found")
	}
}

// testCountsAndSummary: decision counts add up per hour, action and
// reason; the summary counts what is stored.
func testCountsAndSummary(t *testing.T, s greylist.Store) {
	counter, ok := s.(greylist.Counter)
	if !ok {
		t.Fatal("the store keeps no decision counts (greylist.Counter)")
	}
	summarizer, ok := s.(greylist.Summarizer)
	if !ok {
		t.Fatal("the store has no summary (greylist.Summarizer)")
	}
	ctx := context.Background()
	hour := T0.Truncate(time.Hour).UTC()
	in := []greylist.Count{{Hour: hour, Action: "greylist", Reason: "new", N: 3}, {Hour: hour, Action: "pass", Reason: "passed", N: 2}}
	if err := counter.AddCounts(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := counter.AddCounts(ctx, in[:1]); err != nil {
		t.Fatal(err)
	}
	if err := counter.AddCounts(ctx, []greylist.Count{{Hour: hour.Add(-2 * time.Hour), Action: "pass", Reason: "known", N: 1}}); err != nil {
		t.Fatal(err)
	}
	got, err := counter.Counts(ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint([]greylist.Count{{Hour: hour, Action: "greylist", Reason: "new", N: 6}, in[1]}); fmt.Sprint(got) != want {
		t.Errorf("counts %v, want %v", got, want)
	}
	Attempt(t, s, Key(1), T0)
	Attempt(t, s, Key(2), T0)
	Attempt(t, s, Key(2), T0.Add(10*time.Minute))
	sum, err := summarizer.Summary(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if sum != (greylist.Summary{Triplets: 2, Passed: 1, Clients: 1, AutoWhitelisted: 1}) {
		t.Errorf("summary %+v", sum)
	}
}

// testRetriesAndPing: the real delays of passed triplets and the
// never-retried count come from the stored triplets; a healthy store
// answers a ping.
func testRetriesAndPing(t *testing.T, s greylist.Store) {
	reporter, ok := s.(greylist.RetryReporter)
	if !ok {
		t.Fatal("the store reports no retries (greylist.RetryReporter)")
	}
	pinger, ok := s.(greylist.Pinger)
	if !ok {
		t.Fatal("the store cannot be pinged (greylist.Pinger)")
	}
	ctx := context.Background()
	Attempt(t, s, Key(1), T0) // passes after 6 minutes
	Attempt(t, s, Key(1), T0.Add(6*time.Minute))
	Attempt(t, s, Key(2), T0) // passes after 2 hours
	Attempt(t, s, Key(2), T0.Add(2*time.Hour))
	Attempt(t, s, Key(3), T0) // retried too early, never passed
	Attempt(t, s, Key(3), T0.Add(time.Minute))
	Attempt(t, s, Key(4), T0)                // never retried
	Attempt(t, s, Key(5), T0.Add(time.Hour)) // outside the cohort
	bounds := []time.Duration{10 * time.Minute, time.Hour}
	r, err := reporter.Retries(ctx, T0, T0, T0.Add(time.Minute), bounds)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Passed) != "[1 0 1]" || r.Greylisted != 4 || r.NeverRetried != 1 {
		t.Errorf("retries: passed by class %v, greylisted %d, never retried %d; want [1 0 1], 4, 1", r.Passed, r.Greylisted, r.NeverRetried)
	}
	if err := pinger.Ping(ctx); err != nil {
		t.Errorf("ping of a healthy store: %v", err)
	}
}
