package engine

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/checks"
	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/resolver"
)

// deadDNSPipeline is dnsPipeline with a DNS server that never answers.
func deadDNSPipeline(t *testing.T, buf *bytes.Buffer, opts Options, dnsTimeout time.Duration) *Engine {
	t.Helper()
	return dnsPipeline(t, buf, opts, dnsTimeout, dnstest.Dead(t))
}

// dnsPipeline is greymilter's pipeline in --mode suspicious with SPF
// identity, a DNSWL and two DNSBLs that reject (before the known step),
// asking the DNS server at server.
func dnsPipeline(t *testing.T, buf *bytes.Buffer, opts Options, dnsTimeout time.Duration, server string) *Engine {
	t.Helper()
	res, err := resolver.New(resolver.Config{Servers: []string{server}, Timeout: dnsTimeout})
	if err != nil {
		t.Fatal(err)
	}
	list := func(zones ...string) *dnsbl.List {
		var zs []dnsbl.Zone
		for _, z := range zones {
			zone, err := dnsbl.ParseZone(z)
			if err != nil {
				t.Fatal(err)
			}
			zs = append(zs, zone)
		}
		return dnsbl.NewList(res, dnsbl.Any, nil, zs...)
	}
	store, err := sqlitestore.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g := &Greylisting{Greylist: &greylist.Greylist{Store: store, Rules: greylist.DefaultRules}, Keyer: greylist.DefaultKeyer}
	spfCheck := &checks.SPF{Resolver: res, Timeout: dnsTimeout}
	return newTestEngine(buf, opts,
		&DNSWL{List: list("wl.test")},
		&DNSBL{List: list("bl1.test", "bl2.test")},
		&SPFIdentity{SPF: spfCheck},
		g.KnownStep(),
		&Suspicion{Checker: checks.NewChecker(checks.DefaultScores, nil, res), SPF: spfCheck, Threshold: 2},
		g.GreylistStep())
}

// unnamed is a client the MTA knows no name for: the suspicion checks look
// its reverse name up.
var unnamed = &Request{ClientAddr: netip.MustParseAddr("192.0.2.7"), Helo: "mail.example.org", Sender: "a@example.org", Recipient: "b@example.net"}

func TestDNSStepsShareOneBudget(t *testing.T) {
	var buf bytes.Buffer
	const dnsTimeout = 400 * time.Millisecond
	e := deadDNSPipeline(t, &buf, Options{Timeout: 5 * time.Second, DNSTimeout: dnsTimeout}, dnsTimeout)
	start := time.Now()
	v := e.Decide(context.Background(), unnamed)
	el := time.Since(start)
	// SPF, the PTR lookup, the allow list and two block lists one after
	// the other would take five budgets.
	if el < dnsTimeout-50*time.Millisecond || el > dnsTimeout+300*time.Millisecond {
		t.Errorf("decision took %v, want about the DNS budget %v", el, dnsTimeout)
	}
	if v.Action != Defer || v.Reason != "new" {
		t.Fatalf("verdict %+v, want a greylist deferral decided on what answered", v)
	}
	line := buf.String()
	for _, want := range []string{"dnswl_abstained=", "dnsbl_abstained=", "spf=temperror", "check_rdns="} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s: %s", want, line)
		}
	}

	// The next recipient of the same message: the failures are
	// remembered, it costs no wait.
	buf.Reset()
	next := *unnamed
	next.Recipient = "c@example.net"
	start = time.Now()
	if v := e.Decide(context.Background(), &next); v.Action != Defer {
		t.Errorf("second recipient: %+v", v)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Errorf("second recipient took %v, want the remembered failures at once", el)
	}
}

func TestDNSStepsLookUpTogether(t *testing.T) {
	srv := dnstest.Start(t, "testdata/suspicion.zone", "testdata/dnsbl.zone")
	// Every answer comes late. The allow list, the block lists and SPF
	// asked at once cost one wait; one after the other they would cost
	// three.
	const slow = 300 * time.Millisecond
	for _, zone := range []string{"soft.test", "wl.test", "bl1.test", "bl2.test"} {
		srv.SetDelay(zone, slow)
	}
	var buf bytes.Buffer
	e := dnsPipeline(t, &buf, Options{Timeout: 10 * time.Second, DNSTimeout: 5 * time.Second}, 5*time.Second, srv.Addr())
	r := *unnamed
	r.ClientName, r.Helo, r.Sender = "mail.soft.test", "mail.soft.test", "a@soft.test"
	start := time.Now()
	v := e.Decide(context.Background(), &r)
	el := time.Since(start)
	line := buf.String()
	if strings.Contains(line, "abstained") || !strings.Contains(line, "spf=pass") {
		t.Errorf("every lookup should have answered: %s", line)
	}
	if v.Action != Pass || v.Reason != "not-suspicious" {
		t.Errorf("verdict %+v, want not-suspicious\n%s", v, line)
	}
	if el > 2*slow {
		t.Errorf("decision took %v, want about %v", el, slow)
	}
	for _, name := range []string{"7.2.0.192.wl.test", "7.2.0.192.bl1.test", "7.2.0.192.bl2.test"} {
		if srv.Queries(name, dns.TypeA) != 1 {
			t.Errorf("%s asked %d times, want 1", name, srv.Queries(name, dns.TypeA))
		}
	}
}

func TestStoreKeepsItsTimeAfterDNS(t *testing.T) {
	var buf bytes.Buffer
	// A DNS timeout beyond the decision's: DNS gets half, the store the
	// rest, and the answer is the store's, not the fallback.
	const decisionTimeout = 800 * time.Millisecond
	e := deadDNSPipeline(t, &buf, Options{Timeout: decisionTimeout, DNSTimeout: 10 * time.Second}, 10*time.Second)
	start := time.Now()
	v := e.Decide(context.Background(), unnamed)
	if el := time.Since(start); el > decisionTimeout {
		t.Errorf("decision took %v, beyond the decision timeout %v", el, decisionTimeout)
	}
	if v.Action != Defer || v.Reason != "new" {
		t.Fatalf("verdict %+v, want a greylist deferral, not the fallback\n%s", v, buf.String())
	}
}

func TestDNSBudget(t *testing.T) {
	for _, tt := range []struct{ dns, decision, want time.Duration }{
		{2 * time.Second, 10 * time.Second, 2 * time.Second},
		{6 * time.Second, 10 * time.Second, 5 * time.Second},
		{0, 10 * time.Second, 5 * time.Second},
		{2 * time.Second, 0, 2 * time.Second},
		{0, 0, 0},
	} {
		if got := dnsBudget(tt.dns, tt.decision); got != tt.want {
			t.Errorf("dnsBudget(%v, %v) = %v, want %v", tt.dns, tt.decision, got, tt.want)
		}
	}
}

// TestDNSStepsBehindASettlingStepWait: a DNS step behind a step that
// settles without DNS (the known step) is not asked for a client that
// step settles, and shares what is left of the budget otherwise.
func TestDNSStepsBehindASettlingStepWait(t *testing.T) {
	srv := dnstest.Start(t, "testdata/suspicion.zone", "testdata/dnsbl.zone")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	zone, err := dnsbl.ParseZone("wl.test")
	if err != nil {
		t.Fatal(err)
	}
	known := stepFunc{"known", func(_ context.Context, d *Decision) (bool, error) {
		d.Verdict = Verdict{Action: Pass, Reason: "known"}
		return d.Req.Recipient == "known@example.net", nil
	}}
	var buf bytes.Buffer
	e := newTestEngine(&buf, Options{}, &SPFIdentity{SPF: &checks.SPF{Resolver: res}}, known,
		&DNSWL{List: dnsbl.NewList(res, dnsbl.Any, nil, zone)}, stepFunc{"last", deferStep})
	r := *unnamed
	r.Recipient = "known@example.net"
	if v := e.Decide(context.Background(), &r); v.Reason != "known" {
		t.Fatalf("verdict %+v", v)
	}
	if n := srv.Queries("7.2.0.192.wl.test", dns.TypeA); n != 0 {
		t.Errorf("the allow list behind the known step was asked %d times for a known client", n)
	}
	r.Recipient = "new@example.net"
	e.Decide(context.Background(), &r)
	if n := srv.Queries("7.2.0.192.wl.test", dns.TypeA); n != 1 {
		t.Errorf("the allow list was asked %d times for an unknown client, want 1", n)
	}
}
