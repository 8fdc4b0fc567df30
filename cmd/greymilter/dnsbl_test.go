package main

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/engine"
)

func TestDNSFlagErrorsExit2(t *testing.T) {
	tests := []flagCase{
		{[]string{"--addbl", "bad zone"}, "--addbl"},
		{[]string{"--addwl", "wl.test=127.0.0.300"}, "--addwl"},
		{[]string{"--policy", "most"}, "--policy"},
		{[]string{"--dnsbl-action", "drop"}, "--dnsbl-action"},
		{[]string{"--dns-timeout", "0"}, "--dns-timeout"},
		{[]string{"--dnsbl-code", "250"}, "--dnsbl-code"},
		{[]string{"--dnsbl-ecode", "4.7.1"}, "--dnsbl-ecode"},
		{[]string{"--dns-min-ttl", "2h", "--dns-max-ttl", "1h"}, "--dns-max-ttl"},
		{[]string{"--dnswl-threshold", "0"}, "--dnswl-threshold"},
		{[]string{"--dnsbl-reply", "bl.test=550 5.7.1 no"}, "--dnsbl-reply"},
		{[]string{"--addbl", "bl.test", "--dnsbl-reply", "other.test=550 5.7.1 no"}, "--dnsbl-reply"},
		{[]string{"--addbl", "bl.test", "--dns", "not a server"}, "--dns"},
		{[]string{"--addbl", "bl.test", "--dns-timeout", "6s", "--decision-timeout", "10s"}, "--dns-timeout 6s: at most half of --decision-timeout"},
	}
	wantUsageErrors(t, []string{"--db", ":memory:", "--socket", "inet:127.0.0.1:0"}, tests)
}

func TestDNSFlagsBuildSteps(t *testing.T) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	tests := []struct {
		args   []string
		client string
		want   string // action reason, and the reply or header
	}{
		{[]string{"-a", "bl.test"}, "192.0.2.1", "reject dnsbl 550 5.7.1 Rejected. Address 192.0.2.1 found in bl.test"},
		{[]string{"-a", "bl.test"}, "192.0.2.2", "reject dnsbl 550 5.7.1 Rejected. Address 192.0.2.2 found in bl.test"},
		{[]string{"-a", "bl.test=127.0.0.2-127.0.0.11"}, "192.0.2.2", "pass no-step-decided"},
		{[]string{"-a", "bl.test", "--dnsbl-code", "554", "--dnsbl-ecode", "5.7.0", "--dnsbl-text", "{ADDR} on {DNSBL}"}, "192.0.2.1",
			"reject dnsbl 554 5.7.0 192.0.2.1 on bl.test"},
		{[]string{"-a", "bl.test", "--dnsbl-reply", "bl.test=521 5.7.2 go away"}, "192.0.2.1", "reject dnsbl 521 5.7.2 go away"},
		{[]string{"-a", "bl.test", "--dnsbl-action", "mark"}, "192.0.2.1", "pass no-step-decided X-RBL-Warning: 192.0.2.1 listed in bl.test"},
		{[]string{"-a", "bl.test", "--dnsbl-action", "greylist"}, "192.0.2.1", "pass no-step-decided"},
		{[]string{"-a", "bl.test", "--addbl", "wl.test", "--policy", "all"}, "192.0.2.1", "pass no-step-decided"},
		{[]string{"-a", "bl.test", "--addbl", "wl.test", "--dnsbl-threshold", "1", "--policy", "all"}, "192.0.2.1",
			"reject dnsbl 550 5.7.1 Rejected. Address 192.0.2.1 found in bl.test"},
		{[]string{"--addwl", "wl.test", "-a", "bl.test"}, "192.0.2.3", "pass dnswl"},
		{[]string{"--addwl", "wl.test", "--dnswl-threshold", "2"}, "192.0.2.3", "pass no-step-decided"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			p, _ := testPipeline(t, append([]string{"--dns", srv.Addr()}, tt.args...)...)
			e := engineOf(p, slotDNSWL, slotDNSBL)
			v := e.Decide(context.Background(), &engine.Request{ClientAddr: netip.MustParseAddr(tt.client), Recipient: "b@example.net"})
			got := v.Action.String() + " " + v.Reason
			if v.Code != 0 {
				got += " " + v.Reply()
			}
			for _, h := range v.Headers {
				got += " " + h.Name + ": " + h.Value
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestResolverIsBuiltOnce: the app builds one resolver, before the
// modules, and every DNS step asks it.
func TestResolverIsBuiltOnce(t *testing.T) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	a, log, err := testApp(t, "--db", ":memory:", "-s", "inet:127.0.0.1:0", "--dns", srv.Addr(), "--addbl", "bl.test", "--addwl", "wl.test",
		"--dns-timeout", "1s", "--mode", "suspicious")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.resolver.Servers(); len(got) != 1 || got[0] != srv.Addr() {
		t.Errorf("servers %v", got)
	}
	if n := strings.Count(log.String(), "msg=\"DNS resolver\""); n != 1 {
		t.Errorf("resolver built %d times:\n%s", n, log.String())
	}
	before := a.resolver.Stats().Lookups
	a.engine.Decide(context.Background(), &engine.Request{ClientAddr: netip.MustParseAddr("192.0.2.1"), Sender: "a@example.org", Recipient: "b@example.net"})
	if a.resolver.Stats().Lookups == before {
		t.Error("a decision with DNS lists asked the app's resolver nothing")
	}
}

// TestDNSListsAreSelfTested: once in force, every zone is self-tested
// (RFC 5782) at once and then every --dns-selftest-interval; a zone that
// fails is warned about and counted each time, until maintenance stops.
func TestDNSListsAreSelfTested(t *testing.T) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	a, log, err := testApp(t, "--db", ":memory:", "-s", "inet:127.0.0.1:0", "--dns", srv.Addr(), "--dns-timeout", "1s",
		"--dns-selftest-interval", "100ms", "--addbl", "bl.test", "--addwl", "missing.test")
	if err != nil {
		t.Fatal(err)
	}
	const warning = "level=WARN msg=\"DNS list fails the RFC 5782 self-test; check the zone name and the resolver\" component=dns "
	if !log.waitFor(t, func(s string) bool { return strings.Contains(s, warning+"list=dnswl zone=missing.test") }) {
		t.Fatalf("no self-test warning for missing.test:\n%s", log)
	}
	lists := a.inForceDNSLists()
	failures := func(i int) int64 { return lists[i].Stats()[0].SelfTestFailures }
	if !log.waitFor(t, func(string) bool { return failures(0) >= 2 }) {
		t.Errorf("%d self-test failures of missing.test at a 100ms interval, want 2 or more", failures(0))
	}
	stopped := make(chan struct{})
	go func() { a.stopMaintenance(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("self-tests still running 5s after maintenance was stopped")
	}
	if strings.Contains(log.String(), "zone=bl.test err=") || failures(1) != 0 {
		t.Errorf("bl.test, which passes its self-test: %d failures:\n%s", failures(1), log)
	}
}

func TestDNSMetrics(t *testing.T) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	p, _ := testPipeline(t, "--dns", srv.Addr(), "--addbl", "bl.test")
	for range 2 {
		p.steps[slotDNSBL][0].Run(context.Background(), &engine.Decision{Req: &engine.Request{ClientAddr: netip.MustParseAddr("192.0.2.1")}}) //nolint:errcheck
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(dnsCollectors(p.resolver)...)
	reg.MustRegister(newDNSListCollector(func() []*dnsbl.List { return p.dnsLists }))
	out, err := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain, "greymilter_dnslist_refusals_total", "greymilter_dnslist_selftest_failures_total", "greymilter_dnslist_suspended",
		"greymilter_dns_lookups_total", "greymilter_dns_cache_hits_total", "greymilter_dns_queries_total", "greymilter_dns_cache_entries", "greymilter_dns_upstream_up")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"greymilter_dnslist_refusals_total{list=\"dnsbl\",zone=\"bl.test\"} 0\n",
		"greymilter_dnslist_selftest_failures_total{list=\"dnsbl\",zone=\"bl.test\"} 0\n",
		"greymilter_dnslist_suspended{list=\"dnsbl\",zone=\"bl.test\"} 0\n",
		"greymilter_dns_lookups_total 2\n", "greymilter_dns_cache_hits_total 1\n", "greymilter_dns_queries_total 1\n", "greymilter_dns_cache_entries 1\n",
		"greymilter_dns_upstream_up{server=\"" + srv.Addr() + "\"} 1\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
}

// TestDNSListSlots: when a DNSBL rejects or marks, the DNS lists run
// before the known step (a listing is newer than a past pass), the DNSWL
// first; a DNSWL alone or a DNSBL in greylist mode (where a known triplet
// keeps passing) run after it, so that known clients cost no lookups.
func TestDNSListSlots(t *testing.T) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	for _, tt := range []struct {
		args         []string
		dnswl, dnsbl slot
	}{
		{[]string{"--addbl", "bl.test", "--addwl", "wl.test", "--dnsbl-action", "reject"}, slotDNSWL, slotDNSBL},
		{[]string{"--addbl", "bl.test", "--addwl", "wl.test", "--dnsbl-action", "mark"}, slotDNSWL, slotDNSBL},
		{[]string{"--addbl", "bl.test", "--addwl", "wl.test", "--dnsbl-action", "greylist"}, slotDNSWLAfterKnown, slotDNSBLAfterKnown},
		{[]string{"--addwl", "wl.test"}, slotDNSWLAfterKnown, -1},
	} {
		p, _ := testPipeline(t, append([]string{"--dns", srv.Addr()}, tt.args...)...)
		for s, steps := range p.steps {
			for _, st := range steps {
				want := map[string]slot{"dnswl": tt.dnswl, "dnsbl": tt.dnsbl}[st.Name()]
				if (st.Name() == "dnswl" || st.Name() == "dnsbl") && slot(s) != want {
					t.Errorf("%v: %s step in slot %d, want %d", tt.args, st.Name(), s, want)
				}
			}
		}
		if len(p.steps[tt.dnswl]) != 1 {
			t.Errorf("%v: no dnswl step in slot %d", tt.args, tt.dnswl)
		}
	}
	if !(slotDNSWL < slotDNSBL && slotDNSBL < slotKnown && slotKnown < slotDNSWLAfterKnown &&
		slotDNSWLAfterKnown < slotDNSBLAfterKnown && slotDNSBLAfterKnown < slotSuspicion) {
		t.Error("slots out of order")
	}
}
