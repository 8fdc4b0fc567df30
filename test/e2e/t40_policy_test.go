package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// policySetup starts greymilter with its policy server on a free port and
// a Postfix that asks it from smtpd_recipient_restrictions, without the
// milter: the policy front end alone must greylist.
func policySetup(t *testing.T, args ...string) (*harness.GreymilterProcess, *harness.PostfixInstance) {
	t.Helper()
	gm := harness.Greymilter(t, append([]string{"--policy-socket", "inet:127.0.0.1:0"}, args...)...)
	pf := harness.Postfix(t, harness.PostfixOptions{PolicyService: "inet:" + gm.PolicyAddr()})
	return gm, pf
}

// A deferral through check_policy_service: DEFER_IF_PERMIT is answered with
// Postfix's defer_code (450) and the enhanced code and text greymilter gave.
var policyDeferral = regexp.MustCompile(`^450 4\.7\.1 <[^>]+>: Recipient address rejected: Greylisted, please try again in (\d+) seconds$`)

func policyWait(t *testing.T, what string, r harness.Reply) int {
	t.Helper()
	m := policyDeferral.FindStringSubmatch(r.String())
	if m == nil {
		t.Fatalf("%s: %q, want a 450 4.7.1 greylisting deferral", what, r)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestT40PolicyGreylisting runs the milter's core scenario through the
// policy server: deferral with the wait, a retry before the delay, a pass
// after it with the X-Greylist header in the delivered message, and another
// recipient greylisted again, alone and beside the known one.
func TestT40PolicyGreylisting(t *testing.T) {
	t.Parallel()
	_, pf := policySetup(t, "--delay", "3s")
	bob, carol, dave := "bob-t40@"+harness.Domain, "carol-t40@"+harness.Domain, "dave-t40@"+harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.40", ClientName: "mail.sender.example", Helo: "mail.sender.example",
		From: "alice@sender.example", To: []string{bob}}

	res := harness.Send(t, pf.Addr, env)
	first := policyWait(t, "first attempt", res.Rcpt[0])
	if first < 1 || first > 3 {
		t.Errorf("first attempt: wait %d, want 1 to 3 seconds", first)
	}
	start := time.Now()

	res = harness.Send(t, pf.Addr, env)
	if again := policyWait(t, "immediate retry", res.Rcpt[0]); again > first {
		t.Errorf("immediate retry: wait %d, more than the first %d", again, first)
	}

	time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
	res = harness.Send(t, pf.Addr, env)
	if res.Rcpt[0].Code != 250 || res.Data.Code != 250 {
		t.Fatalf("after the delay: %+v", res)
	}
	msg := pf.WaitMessage(t, bob, res.MessageID)
	xg := msg.Header["X-Greylist"]
	if len(xg) != 1 || !regexp.MustCompile(`^delayed [3-9] seconds by greymilter at \S+; `).MatchString(xg[0]) {
		t.Errorf("X-Greylist headers %q, want one \"delayed N seconds by greymilter at HOST; DATE\"", xg)
	}

	// A known triplet passes without a new header.
	res = harness.Send(t, pf.Addr, env)
	if res.Rcpt[0].Code != 250 {
		t.Fatalf("known triplet: %v", res.Rcpt[0])
	}
	if msg := pf.WaitMessage(t, bob, res.MessageID); len(msg.Header["X-Greylist"]) != 0 {
		t.Errorf("known triplet got X-Greylist %q", msg.Header["X-Greylist"])
	}

	// Another recipient is another triplet.
	res = harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: env.ClientAddr, From: env.From, To: []string{carol}})
	policyWait(t, "another recipient", res.Rcpt[0])

	// Per-recipient answers in one transaction: the known one is accepted
	// and delivered, the new one deferred.
	env.To = []string{bob, dave}
	res = harness.Send(t, pf.Addr, env)
	if res.Rcpt[0].Code != 250 {
		t.Errorf("known recipient beside a new one: %v", res.Rcpt[0])
	}
	policyWait(t, "new recipient beside a known one", res.Rcpt[1])
	if res.Data.Code != 250 {
		t.Fatalf("DATA for the accepted recipient: %v", res.Data)
	}
	pf.WaitMessage(t, bob, res.MessageID)
}

// TestT40PolicyAuthenticated checks that a SASL-authenticated client
// (Postfix's sasl_username) is never greylisted.
func TestT40PolicyAuthenticated(t *testing.T) {
	t.Parallel()
	gm, pf := policySetup(t, "--delay", "1h")
	rcpt := "auth-t40@" + harness.Domain
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "198.51.100.40", Login: "joe",
		From: "joe@sender.example", To: []string{rcpt}})
	if res.Rcpt[0].Code != 250 || res.Data.Code != 250 {
		t.Fatalf("authenticated sender: %+v", res)
	}
	pf.WaitMessage(t, rcpt, res.MessageID)
	rec := gm.WaitRecord(func(r harness.LogRecord) bool {
		return r["msg"] == "decision" && strings.Trim(r["recipient"], "<>") == rcpt
	})
	if rec["reason"] != "authenticated" {
		t.Errorf("decision %v, want reason=authenticated", rec)
	}

	// The same client unauthenticated is greylisted: the pass came from
	// the login, not from the triplet.
	res = harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "198.51.100.40",
		From: "joe@sender.example", To: []string{rcpt}})
	policyWait(t, "unauthenticated", res.Rcpt[0])
}
