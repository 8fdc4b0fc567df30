package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/spf13/pflag"

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

// buildDNS parses args into the DNS flags and builds the DNS module.
func buildDNS(t *testing.T, args ...string) (*app, *bytes.Buffer) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	dnsOpts.add(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	a := newApp(slog.New(slog.NewTextHandler(&log, nil)))
	if err := dnsOpts.build(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return a, &log
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
			a, _ := buildDNS(t, append([]string{"--dns", srv.Addr()}, tt.args...)...)
			var steps []engine.Step
			for _, ss := range a.steps {
				steps = append(steps, ss...)
			}
			e := engine.New(engine.Options{Logger: slog.New(slog.DiscardHandler)}, steps...)
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

func TestResolverIsShared(t *testing.T) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	a, log := buildDNS(t, "--dns", srv.Addr(), "--addbl", "bl.test", "--addwl", "wl.test", "--dns-timeout", "1s")
	r, err := a.resolver()
	if err != nil {
		t.Fatal(err)
	}
	if r2, _ := a.resolver(); r2 != r {
		t.Error("second call built another resolver")
	}
	if got := r.Servers(); len(got) != 1 || got[0] != srv.Addr() {
		t.Errorf("servers %v", got)
	}
	if n := strings.Count(log.String(), "DNS resolver"); n != 1 {
		t.Errorf("resolver built %d times:\n%s", n, log.String())
	}
	if len(a.steps[slotDNSWL]) != 1 || len(a.steps[slotDNSBL]) != 1 {
		t.Errorf("steps: dnswl %d, dnsbl %d", len(a.steps[slotDNSWL]), len(a.steps[slotDNSBL]))
	}
}

// TestSelfTestService: the self-test runs at start and then every
// --dns-selftest-interval, until shutdown; a zone that fails it is warned
// about and counted each time.
func TestSelfTestService(t *testing.T) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	for _, tt := range []struct {
		zone string
		warn bool
	}{{"bl.test", false}, {"missing.test", true}} {
		a, log := buildDNS(t, "--dns", srv.Addr(), "--dns-timeout", "1s", "--dns-selftest-interval", "100ms", "--addbl", tt.zone)
		if len(a.services) != 1 {
			t.Fatalf("%d services", len(a.services))
		}
		served := make(chan error, 1)
		go func() { served <- a.services[0].serve() }()
		failures := func() int64 { return a.dnsLists[0].Stats()[0].SelfTestFailures }
		if tt.warn {
			deadline := time.Now().Add(10 * time.Second)
			for failures() < 2 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if failures() < 2 {
				t.Errorf("%s: %d self-test failures in 10s at a 100ms interval, want 2 or more", tt.zone, failures())
			}
		} else {
			time.Sleep(300 * time.Millisecond) // a few intervals
		}
		if err := a.services[0].shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("self-test service still running after shutdown")
		}
		if got := strings.Contains(log.String(), "level=WARN msg=\"DNS list fails the RFC 5782 self-test"); got != tt.warn {
			t.Errorf("%s: warning %v, want %v:\n%s", tt.zone, got, tt.warn, log.String())
		}
		if !tt.warn && failures() != 0 {
			t.Errorf("%s: %d self-test failures", tt.zone, failures())
		}
	}
}

func TestDNSMetrics(t *testing.T) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	a, _ := buildDNS(t, "--dns", srv.Addr(), "--addbl", "bl.test")
	for range 2 {
		a.steps[slotDNSBL][0].Run(context.Background(), &engine.Decision{Req: &engine.Request{ClientAddr: netip.MustParseAddr("192.0.2.1")}}) //nolint:errcheck
	}
	out, err := testutil.GatherAndFormat(a.metrics, expfmt.TypeTextPlain, "greymilter_dnslist_refusals_total", "greymilter_dnslist_selftest_failures_total", "greymilter_dnslist_suspended",
		"greymilter_dns_lookups_total", "greymilter_dns_cache_hits_total", "greymilter_dns_queries_total", "greymilter_dns_cache_entries", "greymilter_dns_upstream_up")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"greymilter_dnslist_refusals_total{list=\"dnsbl\",zone=\"bl.test\"} 0\n",
		"greymilter_dnslist_selftest_failures_total{list=\"dnsbl\",zone=\"bl.test\"} 0\n",
		"greymilter_dnslist_suspended{list=\"dnsbl\",zone=\"bl.test\"} 0\n", "greymilter_dns_lookups_total 2\n", "greymilter_dns_cache_hits_total 1\n", "greymilter_dns_queries_total 1\n", "greymilter_dns_cache_entries 1\n",
		"greymilter_dns_upstream_up{server=\"" + srv.Addr() + "\"} 1\n", "# TYPE greymilter_dns_cache_entries gauge\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if n, err := testutil.GatherAndCount(newApp(slog.Default()).metrics); n != 0 || err != nil {
		t.Errorf("an app without DNS serves %d metrics (%v), want none", n, err)
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
		a, _ := buildDNS(t, append([]string{"--dns", srv.Addr()}, tt.args...)...)
		for s, steps := range a.steps {
			for _, st := range steps {
				want := map[string]slot{"dnswl": tt.dnswl, "dnsbl": tt.dnsbl}[st.Name()]
				if (st.Name() == "dnswl" || st.Name() == "dnsbl") && slot(s) != want {
					t.Errorf("%v: %s step in slot %d, want %d", tt.args, st.Name(), s, want)
				}
			}
		}
		if len(a.steps[tt.dnswl]) != 1 {
			t.Errorf("%v: no dnswl step in slot %d", tt.args, tt.dnswl)
		}
	}
	if !(slotDNSWL < slotDNSBL && slotDNSBL < slotKnown && slotKnown < slotDNSWLAfterKnown &&
		slotDNSWLAfterKnown < slotDNSBLAfterKnown && slotDNSBLAfterKnown < slotSuspicion) {
		t.Error("slots out of order")
	}
}
