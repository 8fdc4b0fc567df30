package engine

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/internal/clocktest"
)

func newGreylistEngine(t *testing.T, autoWhitelist int, extra ...Step) (*Engine, *clocktest.Clock) {
	t.Helper()
	store, err := sqlitestore.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g := &Greylisting{
		Greylist: &greylist.Greylist{Store: store, Rules: greylist.DefaultRules, AutoWhitelist: autoWhitelist},
		Keyer:    greylist.DefaultKeyer,
		Hostname: "mx.test",
	}
	clock := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	var buf bytes.Buffer
	steps := append(append([]Step{}, extra...), g.KnownStep(), g.GreylistStep())
	return newTestEngine(&buf, Options{Clock: clock}, steps...), clock
}

func mail(client, sender, rcpt string) *Request {
	return &Request{ClientAddr: netip.MustParseAddr(client), Sender: sender, Recipient: rcpt}
}

func TestGreylistSteps(t *testing.T) {
	e, clock := newGreylistEngine(t, 0)
	ctx := context.Background()
	r := mail("192.0.2.10", "a@example.org", "b@example.net")

	v := e.Decide(ctx, r)
	if v.Action != Defer || v.Reply() != "451 4.7.1 Greylisted, please try again in 300 seconds" || v.Reason != "new" {
		t.Fatalf("first: %+v", v)
	}
	clock.Advance(100 * time.Second)
	if v := e.Decide(ctx, r); v.Action != Defer || v.Wait != 200*time.Second || v.Reason != "early-retry" {
		t.Fatalf("early retry: %+v", v)
	}
	clock.Advance(250 * time.Second)
	v = e.Decide(ctx, mail("192.0.2.200", "a@example.org", "B@Example.NET")) // same /24, other case
	if v.Action != Pass || v.Reason != "passed" || len(v.Headers) != 1 ||
		!strings.HasPrefix(v.Headers[0].Value, "delayed 350 seconds by greymilter at mx.test; Wed, 25 Nov 2026 12:05:50 +0000") {
		t.Fatalf("after the delay: %+v", v)
	}
	if v := e.Decide(ctx, r); v.Action != Pass || v.Reason != "known" || v.Step != "known" || len(v.Headers) != 0 {
		t.Fatalf("known: %+v", v)
	}
	if v := e.Decide(ctx, mail("192.0.3.10", "a@example.org", "b@example.net")); v.Action != Defer {
		t.Fatalf("other subnet: %+v", v)
	}
}

func TestAutoWhitelistAfterNPasses(t *testing.T) {
	e, clock := newGreylistEngine(t, 3)
	ctx := context.Background()
	pass := func(rcpt string) {
		t.Helper()
		r := mail("198.51.100.7", "news@example.org", rcpt)
		if v := e.Decide(ctx, r); v.Action != Defer {
			t.Fatalf("%s first: %+v", rcpt, v)
		}
		clock.Advance(6 * time.Minute)
		if v := e.Decide(ctx, r); v.Reason != "passed" {
			t.Fatalf("%s retry: %+v", rcpt, v)
		}
	}
	pass("r0@example.net")
	pass("r1@example.net")
	if v := e.Decide(ctx, mail("198.51.100.9", "news@example.org", "probe@example.net")); v.Action != Defer {
		t.Fatalf("after 2 passes: %+v, want still greylisted", v)
	}
	pass("r2@example.net")
	v := e.Decide(ctx, mail("198.51.100.9", "other@example.org", "fresh@example.net"))
	if v.Action != Pass || v.Reason != "auto-whitelist" {
		t.Fatalf("after 3 passes: %+v, want auto-whitelist", v)
	}
	// Forgotten after max-age without mail.
	clock.Advance(greylist.DefaultRules.MaxAge + time.Hour)
	if v := e.Decide(ctx, mail("198.51.100.9", "other@example.org", "fresh2@example.net")); v.Action != Defer {
		t.Fatalf("after max-age: %+v, want greylisted again", v)
	}
}

// identityStep stands for the SPF check: it names the client by domain.
type identityStep struct{}

func (identityStep) Name() string { return "identity" }
func (identityStep) Run(_ context.Context, d *Decision) (bool, error) {
	d.Identity = "spf:example.org"
	return false, nil
}

func TestIdentityReplacesTheSubnet(t *testing.T) {
	e, clock := newGreylistEngine(t, 0, identityStep{})
	ctx := context.Background()
	if v := e.Decide(ctx, mail("192.0.2.1", "a@example.org", "b@example.net")); v.Action != Defer {
		t.Fatalf("first: %+v", v)
	}
	clock.Advance(6 * time.Minute)
	// A retry from another network of the same provider passes.
	if v := e.Decide(ctx, mail("203.0.113.50", "a@example.org", "b@example.net")); v.Reason != "passed" {
		t.Fatalf("retry from another address: %+v", v)
	}
}

func TestKnownUnderTheSubnetCountsWithAnIdentity(t *testing.T) {
	store, err := sqlitestore.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g := &Greylisting{Greylist: &greylist.Greylist{Store: store, Rules: greylist.DefaultRules}, Keyer: greylist.DefaultKeyer}
	clock := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	var buf bytes.Buffer
	plain := newTestEngine(&buf, Options{Clock: clock}, g.KnownStep(), g.GreylistStep())
	withIdentity := newTestEngine(&buf, Options{Clock: clock}, identityStep{}, g.KnownStep(), g.GreylistStep())
	ctx := context.Background()
	r := mail("192.0.2.1", "a@example.org", "b@example.net")
	plain.Decide(ctx, r)
	clock.Advance(6 * time.Minute)
	if v := plain.Decide(ctx, r); v.Reason != "passed" {
		t.Fatalf("retry: %+v", v)
	}
	// Now SPF names the client: the triplet it passed as a subnet is known.
	if v := withIdentity.Decide(ctx, r); v.Reason != "known" {
		t.Fatalf("with an identity: %+v, want known", v)
	}
}
