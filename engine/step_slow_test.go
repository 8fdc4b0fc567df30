package engine

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/checks"
	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/internal/clocktest"
	"github.com/greymilter/greymilter/resolver"
)

// Slow retriers with a fake clock and the in-process DNS server: pool.test
// (testdata/suspicion.zone) sends from two networks that its SPF policy
// authorises, so both are the triplet client "spf:pool.test"; its mail
// comes back only after the one-hour retry window. Learning counts the
// clients by subnet: after two subnets retried late and passed, pool.test
// is learned, and its retries pass up to --max-slow-retry after the first
// attempt. The same with --privacy, where nothing of it is stored plain.
func TestSlowRetriers(t *testing.T) {
	for _, private := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "private"}[private], func(t *testing.T) {
			testSlowRetriers(t, private)
		})
	}
}

func testSlowRetriers(t *testing.T, private bool) {
	ctx := context.Background()
	srv := dnstest.Start(t, "testdata/suspicion.zone")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sqlitestore.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	var store greylist.Store = raw
	var priv *greylist.Privacy
	if private {
		priv, _ = greylist.NewPrivacy([]byte(greylist.NewSecret()))
		store = greylist.PrivateStore{Store: raw, P: priv}
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	rules := greylist.DefaultRules
	rules.RetryWindow = time.Hour
	slow := &greylist.SlowRetriers{Store: raw, Privacy: priv, MinClients: 2, MaxRetry: 6 * time.Hour, Log: logger}
	g := &Greylisting{
		Greylist: &greylist.Greylist{Store: store, Rules: rules},
		Keyer:    greylist.DefaultKeyer,
		Hostname: "mx.test",
		Slow:     slow,
	}
	clock := clocktest.New(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	e := newTestEngine(&logs, Options{Clock: clock}, &SPFIdentity{SPF: &checks.SPF{Resolver: res, Timeout: time.Second}}, g.KnownStep(), g.GreylistStep())

	mail := func(addr, sender, rcpt string) *Request {
		r := client(addr, "", "mail.pool.test", sender)
		r.Recipient = rcpt
		return r
	}
	decide := func(what string, r *Request, after time.Duration, want string) string {
		t.Helper()
		clock.Advance(after)
		logs.Reset()
		v := e.Decide(ctx, r)
		if v.Reason != want {
			t.Fatalf("%s: %s, want %s\n%s", what, v.Reason, want, logs.String())
		}
		return logs.String()
	}
	// lateThenPass: the first attempt, a retry two hours later (after the
	// window: started over, a late retry), and one ten minutes after that.
	lateThenPass := func(who, addr, rcpt string) string {
		t.Helper()
		r := mail(addr, "news@pool.test", rcpt)
		decide(who+": first attempt", r, 0, "new")
		line := decide(who+": late retry", r, 2*time.Hour, "new")
		if !strings.Contains(line, "restarted=true") || !strings.Contains(line, "triplet_client=spf:pool.test") {
			t.Fatalf("%s: the late retry was not started over under the SPF identity\n%s", who, line)
		}
		return decide(who+": retry after the delay", r, 10*time.Minute, "passed")
	}

	if line := lateThenPass("first subnet", "192.0.2.10", "r1@example.net"); strings.Contains(line, "slow retrier learned") {
		t.Fatalf("learned from one client\n%s", line)
	}
	// The same subnet again is no second client.
	lateThenPass("first subnet again", "192.0.2.11", "r2@example.net")
	if slow.Learned("pool.test") {
		t.Fatal("learned from one subnet")
	}
	line := lateThenPass("second subnet", "198.51.100.20", "r3@example.net")
	if !strings.Contains(line, `msg="slow retrier learned`) || !strings.Contains(line, "domain=pool.test") {
		t.Fatalf("learning not logged\n%s", line)
	}
	if !slow.Learned("pool.test") {
		t.Fatal("not learned after two subnets")
	}

	// Learned: a retry three hours after the first attempt passes.
	r := mail("192.0.2.10", "news@pool.test", "r4@example.net")
	decide("learned: first attempt", r, 0, "new")
	if line := decide("learned: retry after 3h", r, 3*time.Hour, "passed"); !strings.Contains(line, "slow_retrier=true") {
		t.Errorf("the slow pass is not noted\n%s", line)
	}
	// ... but not one past --max-slow-retry.
	r = mail("192.0.2.10", "news@pool.test", "r5@example.net")
	decide("learned: first attempt", r, 0, "new")
	decide("learned: retry after 7h", r, 7*time.Hour, "new")
	// Another domain is not learned: its late retry starts over.
	r = mail("203.0.113.9", "a@plain.test", "r6@example.net")
	decide("other domain: first attempt", r, 0, "new")
	decide("other domain: retry after 3h", r, 3*time.Hour, "new")

	// What was learned is in the store: another host (or a restart) knows it.
	other := &greylist.SlowRetriers{Store: raw, Privacy: priv, MinClients: 2, MaxRetry: 6 * time.Hour}
	if err := other.Refresh(ctx, rules, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if !other.Learned("pool.test") || other.Learned("plain.test") {
		t.Errorf("another host: pool.test learned %v, plain.test %v; want true, false", other.Learned("pool.test"), other.Learned("plain.test"))
	}
	list, err := raw.SlowRetriers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sr := range list {
		if private == strings.Contains(sr.Domain, ".test") {
			t.Errorf("stored domain %q (private %v)", sr.Domain, private)
		}
	}
	// Forgotten after max-age.
	if err := other.Refresh(ctx, rules, clock.Now().Add(rules.MaxAge+24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if other.Learned("pool.test") {
		t.Error("still learned after max-age")
	}
}
