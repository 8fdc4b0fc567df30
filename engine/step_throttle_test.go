package engine

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/internal/clocktest"
)

func newThrottleEngine(t *testing.T, th *Throttle) (*Engine, *clocktest.Clock, *Greylisting) {
	t.Helper()
	store, err := sqlitestore.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g := &Greylisting{Greylist: &greylist.Greylist{Store: store, Rules: greylist.DefaultRules}, Keyer: greylist.DefaultKeyer, Hostname: "mx.test"}
	clock := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	var buf bytes.Buffer
	return newTestEngine(&buf, Options{Clock: clock}, g.KnownStep(), g.ThrottleStep(th), g.GreylistStep()), clock, g
}

// With --max-new-triplets 3: three new triplets of one subnet in a minute
// are greylisted, the fourth gets 421 4.7.0 and so does every mail of the
// subnet that reaches greylisting until the throttle time is over; then
// greylisting resumes. Other subnets and known triplets are not touched.
func TestThrottleNewTriplets(t *testing.T) {
	th := &Throttle{Max: 3, For: 10 * time.Minute}
	e, clock, g := newThrottleEngine(t, th)
	ctx := context.Background()
	rcpt := func(i int) string { return fmt.Sprintf("user%d@example.net", i) }

	// One triplet passes first, to be known during the episode.
	known := mail("192.0.2.1", "a@example.org", "known@example.net")
	e.Decide(ctx, known)
	clock.Advance(6 * time.Minute)
	if v := e.Decide(ctx, known); v.Reason != "passed" {
		t.Fatalf("known triplet: %+v", v)
	}

	for i := range 3 {
		if v := e.Decide(ctx, mail("192.0.2.1", "a@example.org", rcpt(i))); v.Reason != "new" || v.Code != 451 {
			t.Fatalf("new triplet %d of 3: %+v", i+1, v)
		}
		clock.Advance(time.Second)
	}
	// A retry of a triplet already open is no new triplet.
	if v := e.Decide(ctx, mail("192.0.2.9", "a@example.org", rcpt(0))); v.Reason != "early-retry" {
		t.Fatalf("retry before the limit: %+v", v)
	}
	v := e.Decide(ctx, mail("192.0.2.2", "a@example.org", rcpt(3)))
	if v.Action != Defer || v.Reason != "throttled" || v.Step != "throttle" || v.Code != 421 || v.ECode != "4.7.0" {
		t.Fatalf("fourth new triplet: %+v, want 421 4.7.0 throttled", v)
	}
	if th.Episodes() != 1 {
		t.Errorf("episodes %d, want 1", th.Episodes())
	}
	// The refused triplet was not stored.
	if _, found, _ := g.Greylist.Store.Lookup(ctx, g.Keyer.Key(mail("192.0.2.2", "", "").ClientAddr, "a@example.org", rcpt(3))); found {
		t.Error("the refused triplet was stored")
	}
	clock.Advance(5 * time.Minute)
	if v := e.Decide(ctx, mail("192.0.2.3", "a@example.org", rcpt(0))); v.Reason != "throttled" {
		t.Errorf("retry during the episode: %+v, want throttled", v)
	}
	if v := e.Decide(ctx, known); v.Reason != "known" {
		t.Errorf("known triplet during the episode: %+v", v)
	}
	if v := e.Decide(ctx, mail("198.51.100.1", "a@example.org", rcpt(0))); v.Reason != "new" {
		t.Errorf("another subnet during the episode: %+v", v)
	}
	if th.Episodes() != 1 || th.Refused() != 2 || th.Throttled(clock.Now()) != 1 {
		t.Errorf("episodes %d refused %d throttled %d, want 1, 2, 1", th.Episodes(), th.Refused(), th.Throttled(clock.Now()))
	}

	clock.Advance(5*time.Minute + time.Second)
	if v := e.Decide(ctx, mail("192.0.2.3", "a@example.org", rcpt(10))); v.Reason != "new" || v.Code != 451 {
		t.Fatalf("after the throttle time: %+v, want greylisting again", v)
	}
	if th.Throttled(clock.Now()) != 0 {
		t.Error("still counted as throttled after the throttle time")
	}
	// The limit counts again from the end of the episode: 2 more pass,
	// the next starts a second episode.
	for i := 11; i < 13; i++ {
		if v := e.Decide(ctx, mail("192.0.2.3", "a@example.org", rcpt(i))); v.Reason != "new" {
			t.Fatalf("new triplet %d after the episode: %+v", i, v)
		}
	}
	if v := e.Decide(ctx, mail("192.0.2.3", "a@example.org", rcpt(13))); v.Reason != "throttled" || th.Episodes() != 2 {
		t.Fatalf("over the limit again: %+v, episodes %d", v, th.Episodes())
	}
}

// A minute later the count starts again: N new triplets a minute, every
// minute, are never throttled.
func TestThrottleCountsPerMinute(t *testing.T) {
	th := &Throttle{Max: 2, For: time.Hour}
	e, clock, _ := newThrottleEngine(t, th)
	ctx := context.Background()
	for i := range 10 {
		if v := e.Decide(ctx, mail("192.0.2.1", "a@example.org", fmt.Sprintf("u%d@example.net", i))); v.Reason != "new" {
			t.Fatalf("triplet %d: %+v", i, v)
		}
		clock.Advance(31 * time.Second)
	}
	if th.Episodes() != 0 {
		t.Errorf("episodes %d, want 0", th.Episodes())
	}
}
