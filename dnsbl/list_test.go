package dnsbl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/resolver"
)

func TestCheckPolicies(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	// slow.bl.test answers after an hour: it abstains at this timeout.
	r, _ := newResolver(t, resolver.Config{Timeout: 300 * time.Millisecond}, srv.Addr())
	tests := []struct {
		zones     string
		policy    Policy
		addr      string
		listed    bool
		hits      string // zones that listed, in order
		abstained string
	}{
		// One list.
		{"a.bl.test", Any, "192.0.2.2", true, "a.bl.test", ""},
		{"a.bl.test", Any, "192.0.2.4", false, "", ""},
		{"a.bl.test", All, "192.0.2.2", true, "a.bl.test", ""},
		{"a.bl.test", Majority, "192.0.2.4", false, "", ""},
		{"a.bl.test", Any, "2001:db8::1", true, "a.bl.test", ""},
		{"a.bl.test", Any, "2001:db8::2", false, "", ""},
		{"a.bl.test", Any, "::ffff:192.0.2.2", true, "a.bl.test", ""},
		// Two lists.
		{"a.bl.test b.bl.test", Any, "192.0.2.2", true, "a.bl.test", ""},
		{"a.bl.test b.bl.test", All, "192.0.2.2", false, "a.bl.test", ""},
		{"a.bl.test b.bl.test", All, "192.0.2.3", true, "a.bl.test b.bl.test", ""},
		{"a.bl.test b.bl.test", Majority, "192.0.2.2", false, "a.bl.test", ""},
		{"a.bl.test b.bl.test", Majority, "192.0.2.3", true, "a.bl.test b.bl.test", ""},
		// Three lists.
		{"a.bl.test b.bl.test c.bl.test", Majority, "192.0.2.2", false, "a.bl.test", ""},
		{"a.bl.test b.bl.test c.bl.test", Majority, "192.0.2.3", true, "a.bl.test b.bl.test", ""},
		{"a.bl.test b.bl.test c.bl.test", All, "192.0.2.1", true, "a.bl.test b.bl.test c.bl.test", ""},
		{"a.bl.test b.bl.test c.bl.test", Threshold(2), "192.0.2.2", false, "a.bl.test", ""},
		{"a.bl.test b.bl.test c.bl.test", Threshold(2), "192.0.2.3", true, "a.bl.test b.bl.test", ""},
		{"a.bl.test b.bl.test c.bl.test", Threshold(3), "192.0.2.3", false, "a.bl.test b.bl.test", ""},
		{"a.bl.test b.bl.test c.bl.test", Any, "192.0.2.4", false, "", ""},
		// Abstaining lists: the policy counts the answers received.
		{"fail.bl.test", Any, "192.0.2.2", false, "", "fail.bl.test"},
		{"a.bl.test fail.bl.test", All, "192.0.2.2", true, "a.bl.test", "fail.bl.test"},
		{"a.bl.test slow.bl.test", All, "192.0.2.2", true, "a.bl.test", "slow.bl.test"},
		{"a.bl.test fail.bl.test slow.bl.test", Majority, "192.0.2.2", true, "a.bl.test", "fail.bl.test slow.bl.test"},
		{"a.bl.test b.bl.test slow.bl.test", Majority, "192.0.2.2", false, "a.bl.test", "slow.bl.test"},
		{"a.bl.test fail.bl.test slow.bl.test", Threshold(2), "192.0.2.2", false, "a.bl.test", "fail.bl.test slow.bl.test"},
		{"fail.bl.test slow.bl.test", All, "192.0.2.2", false, "", "fail.bl.test slow.bl.test"},
		// Refusals abstain rather than list.
		{"pub.bl.test", Any, "192.0.2.2", false, "", "pub.bl.test"},
		{"pub.bl.test", Any, "192.0.2.3", false, "", "pub.bl.test"},
		{"uri.bl.test", Any, "192.0.2.2", false, "", "uri.bl.test"},
		{"a.bl.test pub.bl.test", All, "192.0.2.2", true, "a.bl.test", "pub.bl.test"},
		// Answer filters, and answers outside 127/8.
		{"a.bl.test=127.0.0.2-127.0.0.11", Any, "192.0.2.5", false, "", ""},
		{"a.bl.test", Any, "192.0.2.5", true, "a.bl.test", ""},
		{"a.bl.test=127.0.0.4", Any, "192.0.2.2", true, "a.bl.test", ""},
		{"a.bl.test=127.0.0.4", Any, "192.0.2.3", false, "", ""},
		{"a.bl.test=127.0.0.16/28", Any, "192.0.2.5", true, "a.bl.test", ""},
		{"a.bl.test", Any, "192.0.2.6", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v/%s", tt.zones, tt.policy, tt.addr), func(t *testing.T) {
			l := NewList(r, tt.policy, slog.New(slog.DiscardHandler), mustZones(t, strings.Fields(tt.zones)...)...)
			res := l.Check(context.Background(), netip.MustParseAddr(tt.addr))
			if res.Listed != tt.listed {
				t.Errorf("listed=%v, want %v (%+v)", res.Listed, tt.listed, res)
			}
			// A zone may also have been skipped once the outcome was
			// certain: which one depends on the order the answers came.
			want := map[string]string{}
			for _, z := range l.Zones() {
				want[z.Name] = "clean"
			}
			for _, z := range strings.Fields(tt.hits) {
				want[z] = "hit"
			}
			for _, z := range strings.Fields(tt.abstained) {
				want[z] = "abstained"
			}
			got := map[string]string{}
			for _, z := range res.HitZones() {
				got[z] = "hit"
			}
			for _, z := range res.Clean {
				got[z] = "clean"
			}
			for _, a := range res.Abstained {
				got[a.Zone] = "abstained"
			}
			for _, z := range res.Skipped {
				got[z] = "skipped"
			}
			for z, w := range want {
				if g := got[z]; g != w && g != "skipped" {
					t.Errorf("%s: %s, want %s (%+v)", z, g, w, res)
				}
			}
		})
	}
}

func TestCheckAnswers(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{}, srv.Addr())
	// "all" needs every answer while they all list.
	l := NewList(r, All, nil, mustZones(t, "a.bl.test", "b.bl.test")...)
	res := l.Check(context.Background(), netip.MustParseAddr("192.0.2.3"))
	if !res.Listed || len(res.Hits) != 2 || len(res.Clean)+len(res.Skipped)+len(res.Abstained) != 0 {
		t.Fatalf("result %+v", res)
	}
	if got := fmt.Sprint(res.Hits[0].Answers, res.Hits[1].Answers); got != "[127.0.0.3] [127.0.0.4]" {
		t.Errorf("answers %s", got)
	}
	res = NewList(r, Any, nil, mustZones(t, "c.bl.test")...).Check(context.Background(), netip.MustParseAddr("192.0.2.3"))
	if res.Listed || fmt.Sprint(res.Clean) != "[c.bl.test]" {
		t.Errorf("result %+v", res)
	}
	la := NewList(r, Any, nil, mustZones(t, "a.bl.test")...)
	res = la.Check(context.Background(), netip.MustParseAddr("192.0.2.2"))
	if len(res.Hits) != 1 || len(res.Hits[0].Answers) != 2 {
		t.Fatalf("two answers from a.bl.test: %+v", res.Hits)
	}
	if res.Hits[0].Zone != &la.Zones()[0] {
		t.Error("hit does not point at the list's zone")
	}
}

func TestCheckStopsWhenCertain(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{Timeout: time.Hour}, srv.Addr())
	tests := []struct {
		policy Policy
		addr   string
		listed bool
	}{
		{Any, "192.0.2.2", true},  // a lists it: no need to wait for slow
		{All, "192.0.2.4", false}, // a does not list it: "all" cannot hold
		{Threshold(1), "192.0.2.2", true},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			l := NewList(r, tt.policy, nil, mustZones(t, "a.bl.test", "slow.bl.test")...)
			done := make(chan Result, 1)
			go func() { done <- l.Check(context.Background(), netip.MustParseAddr(tt.addr)) }()
			select {
			case res := <-done:
				if res.Listed != tt.listed || fmt.Sprint(res.Skipped) != "[slow.bl.test]" || len(res.Abstained) != 0 {
					t.Errorf("result %+v", res)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Check waited for a list whose answer could not change the outcome")
			}
		})
	}
}

func TestCheckHonoursDeadline(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{Timeout: time.Hour}, srv.Addr())
	l := NewList(r, Any, nil, mustZones(t, "slow.bl.test", "b.bl.test")...)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := l.Check(ctx, netip.MustParseAddr("192.0.2.2"))
	if res.Listed || len(res.Abstained) != 1 || !errors.Is(res.Abstained[0].Err, context.DeadlineExceeded) {
		t.Errorf("result %+v", res)
	}
}

func TestRefusalLoggedOncePerZone(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{}, srv.Addr())
	var buf bytes.Buffer
	l := NewList(r, Any, slog.New(slog.NewTextHandler(&buf, nil)), mustZones(t, "pub.bl.test", "uri.bl.test")...)
	for _, a := range []string{"192.0.2.2", "192.0.2.3", "192.0.2.2"} {
		res := l.Check(context.Background(), netip.MustParseAddr(a))
		for _, ab := range res.Abstained {
			if !errors.Is(ab.Err, ErrRefused) {
				t.Errorf("%s: %v, want ErrRefused", ab.Zone, ab.Err)
			}
		}
	}
	log := buf.String()
	if n := strings.Count(log, "zone=pub.bl.test"); n != 1 {
		t.Errorf("pub.bl.test refusal logged %d times:\n%s", n, log)
	}
	if n := strings.Count(log, "zone=uri.bl.test"); n != 1 {
		t.Errorf("uri.bl.test refusal logged %d times:\n%s", n, log)
	}
}

func TestSelfTest(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{Timeout: 300 * time.Millisecond}, srv.Addr())
	tests := []struct {
		zone string
		ok   bool
		want string // in the error
	}{
		{"a.bl.test", true, ""},
		{"wl1.test", true, ""},
		{"nolist.bl.test", false, "127.0.0.2 should be listed"},
		{"every.bl.test", false, "127.0.0.1 should be listed=false"},
		{"pub.bl.test", false, "refused"},
		{"uri.bl.test", true, ""}, // refuses only real queries
		{"fail.bl.test", false, "server failure"},
		{"slow.bl.test", false, "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.zone, func(t *testing.T) {
			var buf bytes.Buffer
			l := NewList(r, Any, slog.New(slog.NewTextHandler(&buf, nil)), mustZones(t, tt.zone)...)
			errs := l.SelfTest(context.Background())
			if tt.ok {
				if len(errs) != 0 || buf.Len() != 0 {
					t.Errorf("self-test failed: %v\n%s", errs, buf.String())
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.want) {
				t.Fatalf("errors %v, want one with %q", errs, tt.want)
			}
			if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "zone="+tt.zone) {
				t.Errorf("no warning logged:\n%s", buf.String())
			}
		})
	}
}

func TestDNSWLThreshold(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{}, srv.Addr())
	tests := []struct {
		threshold int
		addr      string
		listed    bool
	}{
		{1, "192.0.2.20", true},
		{1, "192.0.2.22", false},
		{2, "192.0.2.20", false},
		{2, "192.0.2.21", true},
	}
	for _, tt := range tests {
		l := NewList(r, Threshold(tt.threshold), nil, mustZones(t, "wl1.test", "wl2.test")...)
		if got := l.Check(context.Background(), netip.MustParseAddr(tt.addr)).Listed; got != tt.listed {
			t.Errorf("threshold %d, %s: listed=%v, want %v", tt.threshold, tt.addr, got, tt.listed)
		}
	}
}

func TestCheckNoZones(t *testing.T) {
	if res := NewList(nil, Any, nil).Check(context.Background(), netip.MustParseAddr("192.0.2.1")); res.Listed {
		t.Error("empty list lists")
	}
}

// TestWarmCheckAnswersFromTheCache: a second check of the same address
// gives the same result from the cache alone, refusals included.
func TestWarmCheckAnswersFromTheCache(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{}, srv.Addr())
	l := NewList(r, All, nil, mustZones(t, "a.bl.test", "b.bl.test", "c.bl.test")...)
	ctx := context.Background()
	for _, addr := range []string{"192.0.2.3", "192.0.2.2", "192.0.2.99"} {
		a := netip.MustParseAddr(addr)
		cold := l.Check(ctx, a)
		// A lookup cut short once the outcome was certain left nothing in
		// the cache: the zones it skipped are asked alone.
		for _, z := range cold.Skipped {
			NewList(r, Any, nil, mustZones(t, z)...).Check(ctx, a)
		}
		sent := srv.Total()
		warm := l.Check(ctx, a)
		if srv.Total() != sent {
			t.Errorf("%s: the warm check sent %d queries", addr, srv.Total()-sent)
		}
		if len(warm.Skipped) != 0 || warm.Listed != cold.Listed {
			t.Errorf("%s: cold %+v, warm %+v", addr, cold, warm)
		}
		// What the cold check learned, the warm one says the same way.
		warmByZone := outcomesByZone(warm)
		for zone, o := range outcomesByZone(cold) {
			if warmByZone[zone] != o {
				t.Errorf("%s: %s: cold %q, warm %q", addr, zone, o, warmByZone[zone])
			}
		}
	}
}

// outcomesByZone says what a check found in each zone it heard from.
func outcomesByZone(r Result) map[string]string {
	out := make(map[string]string)
	for _, h := range r.Hits {
		out[h.Zone.Name] = fmt.Sprint("listed ", h.Answers)
	}
	for _, z := range r.Clean {
		out[z] = "clean"
	}
	for _, a := range r.Abstained {
		out[a.Zone] = "abstained: " + a.Err.Error()
	}
	return out
}

// TestAllowListRefusals: the refusal codes of the well-known lists abstain
// in an allow list as in a block list (a blocked dnswl.org must not
// whitelist everybody), are logged once per zone and counted.
func TestAllowListRefusals(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{}, srv.Addr())
	for _, zone := range []string{"dnswl.wl.test", "spamhaus.wl.test", "error.wl.test"} {
		t.Run(zone, func(t *testing.T) {
			var buf bytes.Buffer
			l := NewAllowList(r, Threshold(1), slog.New(slog.NewTextHandler(&buf, nil)), mustZones(t, zone)...)
			const n = 3
			for range n {
				res := l.Check(context.Background(), netip.MustParseAddr("192.0.2.20"))
				if res.Listed || len(res.Hits) != 0 || len(res.Abstained) != 1 || !errors.Is(res.Abstained[0].Err, ErrRefused) {
					t.Fatalf("result %+v, want an abstention with ErrRefused", res)
				}
			}
			if c := strings.Count(buf.String(), "refuses our queries"); c != 1 {
				t.Errorf("refusal logged %d times, want once:\n%s", c, buf.String())
			}
			if st := l.Stats(); len(st) != 1 || st[0].Zone != zone || st[0].Refusals != n {
				t.Errorf("stats %+v, want %d refusals of %s", st, n, zone)
			}
		})
	}
}

// TestSelfTestSuspendsAllowList: an allow list that fails the RFC 5782
// self-test with a wrong answer is suspended (it abstains without a
// lookup) until it passes again; a block list that fails is only
// reported. Both count the failure.
func TestSelfTestSuspendsAllowList(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, clock := newResolver(t, resolver.Config{}, srv.Addr())
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	wl := NewAllowList(r, Threshold(1), log, mustZones(t, "late.wl.test")...)
	client := netip.MustParseAddr("192.0.2.20")
	if res := wl.Check(context.Background(), client); !res.Listed {
		t.Fatalf("before the self-test: %+v, want listed", res)
	}
	if errs := wl.SelfTest(context.Background()); len(errs) != 1 {
		t.Fatalf("self-test errors %v, want one", errs)
	}
	before := srv.Queries("20.2.0.192.late.wl.test", dns.TypeA)
	res := wl.Check(context.Background(), client)
	if res.Listed || len(res.Abstained) != 1 || !errors.Is(res.Abstained[0].Err, ErrSuspended) {
		t.Errorf("suspended list: %+v, want an abstention with ErrSuspended", res)
	}
	if srv.Queries("20.2.0.192.late.wl.test", dns.TypeA) != before {
		t.Error("a suspended list was queried")
	}
	if st := wl.Stats()[0]; !st.Suspended || st.SelfTestFailures != 1 {
		t.Errorf("stats %+v, want suspended after one failure", st)
	}
	if !strings.Contains(buf.String(), "suspended") {
		t.Errorf("suspension not logged:\n%s", buf.String())
	}

	// The list is repaired; once its cached answer expires the next
	// self-test passes and the list counts again.
	if err := srv.AddRecords("2.0.0.127.late.wl.test. 300 IN A 127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if errs := wl.SelfTest(context.Background()); len(errs) != 0 {
		t.Fatalf("self-test of the repaired list: %v", errs)
	}
	if res := wl.Check(context.Background(), client); !res.Listed {
		t.Errorf("resumed list: %+v, want listed", res)
	}
	if st := wl.Stats()[0]; st.Suspended || st.SelfTestFailures != 1 {
		t.Errorf("stats %+v, want resumed", st)
	}
	if !strings.Contains(buf.String(), "passes the RFC 5782 self-test again") {
		t.Errorf("resumption not logged:\n%s", buf.String())
	}

	// A block list failing the test keeps answering.
	bl := NewList(r, Any, log, mustZones(t, "every.bl.test")...)
	if errs := bl.SelfTest(context.Background()); len(errs) != 1 {
		t.Fatalf("self-test errors %v, want one", errs)
	}
	if st := bl.Stats()[0]; st.Suspended || st.SelfTestFailures != 1 {
		t.Errorf("block list stats %+v, want reported, not suspended", st)
	}
}

// TestSelfTestLookupFailureDoesNotSuspend: a self-test that gets no
// answer (dead DNS) is reported, but does not suspend an allow list: its
// lookups abstain by themselves, and it must not stay off for an interval
// after DNS comes back.
func TestSelfTestLookupFailureDoesNotSuspend(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{Timeout: 300 * time.Millisecond}, srv.Addr())
	wl := NewAllowList(r, Threshold(1), nil, mustZones(t, "fail.bl.test")...)
	if errs := wl.SelfTest(context.Background()); len(errs) != 1 {
		t.Fatalf("self-test errors %v, want one", errs)
	}
	if st := wl.Stats()[0]; st.Suspended || st.SelfTestFailures != 1 {
		t.Errorf("stats %+v, want one failure, not suspended", st)
	}
}

// TestRunSelfTests: the self-test runs at once and then every interval,
// until the context ends.
func TestRunSelfTests(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{CacheSize: -1}, srv.Addr())
	wl := NewAllowList(r, Threshold(1), nil, mustZones(t, "wl1.test")...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { wl.RunSelfTests(ctx, 50*time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Queries("2.0.0.127.wl1.test", dns.TypeA) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("self-test ran %d times in 10s at a 50ms interval", srv.Queries("2.0.0.127.wl1.test", dns.TypeA))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunSelfTests did not return after its context ended")
	}
}
