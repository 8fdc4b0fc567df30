package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/rules"
)

const testRules = `
recipient never@example.net                 => mode never
recipient @customer.test                    => mode always delay 1m text "Rule: again in {SECONDS}s"
sender @pool.test recipient b@example.net   => mode suspicious
client 192.0.2.1                            => action reject
recipient b@example.net                     => mode always
=> mode never
`

func to(r *Request, rcpt string) *Request {
	c := *r
	c.Recipient = rcpt
	return &c
}

func TestRules(t *testing.T) {
	tests := []struct {
		desc       string
		suspicious bool
		r          *Request
		want       string // action, reason and wait
		log        []string
	}{
		{"mode never passes a bot at once", false, to(dynamic, "never@example.net"), "pass rule-never 0s", []string{"rule=", ":2"}},
		{"opt-in: the customer is greylisted even if clean, with the rule's delay", true, to(cleanPass, "x@customer.test"), "greylist new 1m0s", []string{":3"}},
		{"opt-in: others pass (catch-all never)", false, to(dynamic, "x@other.test"), "pass rule-never 0s", []string{":7"}},
		{"mode suspicious for one sender domain under --mode always", false, cleanPass, "pass not-suspicious 0s", []string{":4", "score=-1"}},
		{"... a suspicious sender of it is greylisted", false, to(spfFail, "b@example.net"), "greylist new 5m0s", []string{":4", "score=2"}},
		{"mode always for another under --mode suspicious", true, to(cleanNone, "b@example.net"), "greylist new 5m0s", []string{":6"}},
		{"the rule's action: reject this listed client", false, to(listed, "x@other.test"), "reject dnsbl 0s", []string{":5"}},
		{"the flag's action (greylist) for another listed client", false, client("192.0.2.2", "mail.pool.test", "mail.pool.test", "a@pool.test"), "greylist new 5m0s", []string{":4", "suspicion=dnsbl"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			env := newSuspicionEnv(t, suspicionSetup{suspicious: tt.suspicious, threshold: 2, rules: testRules, dnsbl: true})
			v, line := env.decide(t, tt.r)
			if got := v.Action.String() + " " + v.Reason + " " + v.Wait.String(); got != tt.want {
				t.Errorf("verdict %q, want %q\n%s", got, tt.want, line)
			}
			for _, s := range tt.log {
				if !strings.Contains(line, s) {
					t.Errorf("log line lacks %q:\n%s", s, line)
				}
			}
		})
	}
}

// A rule's delay and text apply to the deferral, and a triplet's record
// keeps only when it was first seen: the delay in force when it retries
// decides, so a rule changed between two attempts counts from then on.
func TestRuleDelayOverStoredRecord(t *testing.T) {
	env := newSuspicionEnv(t, suspicionSetup{rules: "recipient @customer.test => delay 1m text \"Rule: again in {SECONDS}s\"\n"})
	r := to(cleanNone, "x@customer.test")
	v, line := env.decide(t, r)
	if v.Action != Defer || v.Wait != time.Minute || v.Text != "Rule: again in 60s" {
		t.Fatalf("first attempt: %+v\n%s", v, line)
	}
	other := to(cleanNone, "x@elsewhere.test")
	if v, _ := env.decide(t, other); v.Wait != 5*time.Minute || v.Text != "Greylisted, please try again in 300 seconds" {
		t.Fatalf("no rule: %+v", v)
	}
	env.clock.Advance(61 * time.Second)
	if v, line := env.decide(t, r); v.Action != Pass || v.Reason != "passed" {
		t.Errorf("retry after the rule's minute: %+v\n%s", v, line)
	}
	if v, _ := env.decide(t, other); v.Action != Defer || v.Reason != "early-retry" || v.Wait != 5*time.Minute-61*time.Second {
		t.Errorf("retry without a rule after a minute: %+v", v)
	}
}

func TestVerifiedTLS(t *testing.T) {
	env := newSuspicionEnv(t, suspicionSetup{rules: "cert-subject mx.partner.test => mode never\ncert-fingerprint AB:CD:EF => mode never\n"})
	env.e.SetPipeline(&Pipeline{Steps: append([]Step{VerifiedTLS{}}, env.steps...)})
	verified := to(dynamic, "b@example.net")
	verified.TLS = TLSClient{Verified: true, Subject: "mx.partner.test"}
	if v, line := env.decide(t, verified); v.Action != Pass || v.Reason != "verified-tls" || !strings.Contains(line, "cert_subject=mx.partner.test") {
		t.Errorf("verified: %+v\n%s", v, line)
	}
	env.e.SetPipeline(&Pipeline{Steps: env.steps}) // without --bypass-verified-tls
	if v, line := env.decide(t, verified); v.Action != Pass || v.Reason != "rule-never" {
		t.Errorf("verified subject matched by a rule: %+v\n%s", v, line)
	}
	unverified := to(dynamic, "b@example.net")
	unverified.TLS = TLSClient{Subject: "mx.partner.test"}
	if v, line := env.decide(t, unverified); v.Action != Defer {
		t.Errorf("a subject the MTA did not verify matched: %+v\n%s", v, line)
	}
	pinned := to(dynamic, "b@example.net")
	pinned.TLS = TLSClient{Fingerprint: "ab:cd:ef"}
	if v, line := env.decide(t, pinned); v.Action != Pass || v.Reason != "rule-never" {
		t.Errorf("pinned fingerprint: %+v\n%s", v, line)
	}
}

// In suspicious mode an early retry is a bot hammering: without --penalty
// it waits the delay again; in mode always it does not; an explicit
// --penalty 0 turns it off.
func TestModeDefaultPenalty(t *testing.T) {
	for _, tt := range []struct {
		desc        string
		suspicious  bool
		autoPenalty bool
		rules       string
		want        time.Duration
	}{
		{"suspicious, no --penalty", true, true, "", 10*time.Minute - time.Minute},
		{"always, no --penalty", false, true, "", 4 * time.Minute},
		{"suspicious, --penalty 0", true, false, "", 4 * time.Minute},
		{"always, a rule's mode suspicious", false, true, "sender @pool.test => mode suspicious", 10*time.Minute - time.Minute},
		{"suspicious, a rule's delay", true, true, "sender @pool.test => delay 2m", 4*time.Minute - time.Minute},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			env := newSuspicionEnv(t, suspicionSetup{suspicious: tt.suspicious, threshold: 2, autoPenalty: tt.autoPenalty, rules: tt.rules})
			if v, line := env.decide(t, dynamic); v.Action != Defer || v.Reason != "new" {
				t.Fatalf("first: %+v\n%s", v, line)
			}
			env.clock.Advance(time.Minute)
			if v, line := env.decide(t, dynamic); v.Reason != "early-retry" || v.Wait != tt.want {
				t.Errorf("early retry: %s wait %v, want %v\n%s", v.Reason, v.Wait, tt.want, line)
			}
		})
	}
	// The penalty is capped by --max-wait.
	env := newSuspicionEnv(t, suspicionSetup{suspicious: true, threshold: 2, autoPenalty: true})
	env.g.Greylist.Rules.MaxWait = 7 * time.Minute
	env.decide(t, dynamic)
	env.clock.Advance(time.Minute)
	if v, _ := env.decide(t, dynamic); v.Wait != 6*time.Minute {
		t.Errorf("capped: wait %v, want 6m", v.Wait)
	}
}

// --dnsbl-action score: a listing is evidence. Only a listed client that
// also looks like a bot reaches --reject-threshold; a listed mail server is
// greylisted and an unlisted bot is not rejected however it scores.
func TestScoredDNSBL(t *testing.T) {
	botListed := client("192.0.2.2", "dsl-192-0-2-2.dyn.example.test", "pc-home", "a@plain.test")
	serverListed := listed // mail.pool.test, SPF pass
	botUnlisted := dynamic // score 4, listed nowhere
	serverUnlisted := cleanPass
	for _, tt := range []struct {
		desc       string
		suspicious bool
		r          *Request
		want       string
		log        []string
	}{
		{"listed bot", true, botListed, "reject dnsbl-score", []string{"check_dnsbl=+3:bl1.test", "score=7", "reject_threshold=6"}},
		{"listed server", true, serverListed, "greylist new", []string{"check_dnsbl=+3:bl1.test", "check_spf=0:skipped", "score=3"}},
		{"unlisted bot", true, botUnlisted, "greylist new", []string{"score=4"}},
		{"unlisted server", true, serverUnlisted, "pass not-suspicious", []string{"score=-1"}},
		{"always: listed bot", false, botListed, "reject dnsbl-score", []string{"score=7"}},
		{"always: listed server", false, serverListed, "greylist new", []string{"score=3"}},
		{"always: unlisted bot, nothing scored", false, botUnlisted, "greylist new", nil},
		{"always: unlisted server", false, serverUnlisted, "greylist new", nil},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			env := newSuspicionEnv(t, suspicionSetup{suspicious: tt.suspicious, threshold: 2, dnsbl: true, dnsblAction: DNSBLScore, scoreDNSBL: 3, rejectThreshold: 6})
			v, line := env.decide(t, tt.r)
			if got := v.Action.String() + " " + v.Reason; got != tt.want {
				t.Errorf("verdict %q, want %q\n%s", got, tt.want, line)
			}
			if v.Action == Reject && (v.Code != 550 || v.ECode != "5.7.1" || !strings.Contains(v.Text, "found in bl1.test")) {
				t.Errorf("rejection %q", v.Reply())
			}
			if tt.log == nil && strings.Contains(line, "score=") {
				t.Errorf("scored in mode always without a listing:\n%s", line)
			}
			for _, s := range tt.log {
				if !strings.Contains(line, " "+s) {
					t.Errorf("log line lacks %q:\n%s", s, line)
				}
			}
		})
	}
}

// Every action a rule may name is one the DNSBL step knows.
func TestRuleActionsParse(t *testing.T) {
	for _, a := range rules.Actions {
		if got, err := ParseDNSBLAction(a); err != nil || got.String() != a {
			t.Errorf("%s: %v %v", a, got, err)
		}
	}
}

// Explaining a decision (greymilter db explain) shows the rule that
// matched, and previews the attempt under the rule's delay.
func TestExplainShowsRule(t *testing.T) {
	env := newSuspicionEnv(t, suspicionSetup{rules: "recipient @customer.test => delay 1m\n"})
	x := env.e.Explain(context.Background(), to(cleanNone, "x@customer.test"))
	var rule string
	for _, st := range x.Steps {
		for _, n := range st.Notes {
			if st.Step == "rules" && n.Key == "rule" {
				rule = n.Value
			}
		}
	}
	if !strings.HasSuffix(rule, "rules:1") || x.Verdict.Action != Defer || x.Verdict.Wait != time.Minute {
		t.Errorf("explained %+v; rule %q", x, rule)
	}
}
