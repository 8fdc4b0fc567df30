package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/rules"
)

func TestBadChecksFlagsExit2(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "patterns")
	if err := os.WriteFile(bad, []byte("# ok\ndynamic dsl\nsometimes dsl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []flagCase{
		{[]string{"--dynamic-patterns", bad}, bad + ":3: "}, // checked in mode always too
		{[]string{"--mode", "suspicious", "--dynamic-patterns", bad}, bad + ":3: "},
		{[]string{"--dynamic-patterns", bad + ".missing"}, "missing"},
		{[]string{"--mode", "sometimes"}, "--mode"},
		{[]string{"--spf-timeout", "0"}, "--spf-timeout"},
		{[]string{"--suspicion-threshold", "two"}, "--suspicion-threshold"},
	}
	wantUsageErrors(t, []string{"--db", ":memory:", "--socket", "inet:127.0.0.1:0", "--dns", "127.0.0.1:53"}, tests)
}

// checksPipeline builds the pipeline of args with a DNS server of its own.
func checksPipeline(t *testing.T, args ...string) *pipeline {
	t.Helper()
	srv := dnstest.Start(t)
	p, _ := testPipeline(t, append([]string{"--dns", srv.Addr()}, args...)...)
	return p
}

// TestChecksModuleSteps: the suspicion step is there in every mode (in
// --mode always it acts only on DNSBL listings in score mode and on rules
// that set mode suspicious); the mode goes to it and to the greylist step;
// the penalty follows the mode unless --penalty was given.
func TestChecksModuleSteps(t *testing.T) {
	tests := []struct {
		args        []string
		identity    bool
		mode        rules.Mode
		autoPenalty bool
	}{
		{nil, true, rules.ModeAlways, true},
		{[]string{"--mode", "always", "--spf-identity=false"}, false, rules.ModeAlways, true},
		{[]string{"--mode", "suspicious"}, true, rules.ModeSuspicious, true},
		{[]string{"--mode", "suspicious", "--spf-identity=false", "--reject-threshold", "6", "--penalty", "0"}, false, rules.ModeSuspicious, false},
	}
	for _, tt := range tests {
		p := checksPipeline(t, tt.args...)
		if got := len(p.steps[slotIdentity]) == 1; got != tt.identity {
			t.Errorf("%v: identity step %v, want %v", tt.args, got, tt.identity)
		}
		if len(p.steps[slotSuspicion]) != 1 {
			t.Fatalf("%v: %d suspicion steps, want 1", tt.args, len(p.steps[slotSuspicion]))
		}
		s := p.steps[slotSuspicion][0].(*engine.Suspicion)
		if s.Mode != tt.mode || p.greylisting.Mode != tt.mode {
			t.Errorf("%v: mode %v (greylist step %v), want %v", tt.args, s.Mode, p.greylisting.Mode, tt.mode)
		}
		if p.greylisting.AutoPenalty != tt.autoPenalty {
			t.Errorf("%v: penalty follows the mode: %v, want %v", tt.args, p.greylisting.AutoPenalty, tt.autoPenalty)
		}
	}
}

// TestSPFTimeoutWithinDNSBudget: SPF shares the decision's DNS budget, so
// its own timeout is never longer.
func TestSPFTimeoutWithinDNSBudget(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 2 * time.Second},
		{[]string{"--dns-timeout", "1s"}, time.Second},
		{[]string{"--dns-timeout", "1s", "--spf-timeout", "4s"}, time.Second},
		{[]string{"--dns-timeout", "3s", "--spf-timeout", "500ms"}, 500 * time.Millisecond},
	} {
		p := checksPipeline(t, tt.args...)
		if got := p.steps[slotIdentity][0].(*engine.SPFIdentity).SPF.Timeout; got != tt.want {
			t.Errorf("%v: SPF timeout %v, want %v", tt.args, got, tt.want)
		}
	}
}

// TestDynamicPatternsReload: SIGHUP rereads the pattern files; a broken
// one is logged with FILE:LINE and the patterns in force stay.
func TestDynamicPatternsReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "patterns")
	write := func(text string) {
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# nothing yet\n")
	srv := dnstest.Start(t)
	a, logs, err := testApp(t, "--db", ":memory:", "--socket", "none", "--policy-socket", "inet:127.0.0.1:0", "--dns", srv.Addr(),
		"--mode", "suspicious", "--spf-identity=false", "--dynamic-patterns", file, "--trusted-networks", "", "--no-default-whitelist")
	if err != nil {
		t.Fatal(err)
	}
	reason := func() string {
		return a.engine.Decide(context.Background(), &engine.Request{
			ClientAddr: netip.MustParseAddr("198.51.100.7"), ClientName: "gw7.isp.example", Helo: "gw7.isp.example",
			Sender: "a@isp.example", Recipient: "b@example.net",
		}).Reason
	}
	if got := reason(); got != "not-suspicious" {
		t.Fatalf("before: %s, want not-suspicious", got)
	}
	write("dynamic gw\n")
	a.reload()
	if got := reason(); got != "new" {
		t.Fatalf("after reload: %s, want the client greylisted", got)
	}
	write("dynamic gw\ndynamic 3g\n")
	a.reload()
	if !strings.Contains(logs.String(), file+":2: ") {
		t.Errorf("log %q does not name %s:2", logs.String(), file)
	}
	if got := reason(); got != "early-retry" {
		t.Fatalf("after a broken reload: %s, want the previous patterns in force", got)
	}
}
