package e2e

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// The two senders of T50: a mail server of clean.e2e.test (verified name
// equal to its HELO, SPF pass: score -1), and a DSL line that greets with
// a made-up name (dynamic name +2, HELO mismatch +2: score 4).
func cleanSender(rcpt string) harness.Envelope {
	return harness.Envelope{ClientAddr: "198.51.100.10", ClientName: "mail.clean.e2e.test", Helo: "mail.clean.e2e.test",
		From: "alice@clean.e2e.test", To: []string{rcpt}}
}

func dynamicSender(rcpt string) harness.Envelope {
	return harness.Envelope{ClientAddr: "203.0.113.50", ClientName: "dsl-203-0-113-50.dyn.isp.e2e.test", Helo: "desktop-7f3k",
		From: "bob@other.e2e.test", To: []string{rcpt}}
}

// suspicionSystem starts a DNS server with the T50 zone, greymilter
// asking it (plus args) and a Postfix that uses greymilter as its milter.
func suspicionSystem(t *testing.T, args ...string) (*dnstest.Server, *harness.GreymilterProcess, *harness.PostfixInstance) {
	t.Helper()
	harness.Require(t, "postfix")
	srv := dnstest.Start(t, "testdata/suspicion.zone")
	gm, pf := system(t, append([]string{"--dns", srv.Addr()}, args...)...)
	return srv, gm, pf
}

// TestT50Suspicious: in --mode suspicious the clean sender gets 250 on its
// first try, and its message is delivered; the dynamic one gets 451. The
// decisions carry every check's contribution.
func TestT50Suspicious(t *testing.T) {
	t.Parallel()
	srv, gm, pf := suspicionSystem(t, "--mode", "suspicious")

	rcpt := "t50s-clean@" + harness.Domain
	res := harness.Send(t, pf.Addr, cleanSender(rcpt))
	accepted(t, "clean sender, first try", res.Rcpt[0])
	pf.WaitMessage(t, rcpt, res.MessageID)
	rec := decision(t, gm, rcpt, 1, "pass", "not-suspicious")
	for k, v := range map[string]string{"check_helo": "0:equal", "check_dynamic": "0:static:mail", "check_spf": "-1:pass", "score": "-1", "spf_domain": "clean.e2e.test"} {
		if rec[k] != v {
			t.Errorf("clean sender: %s=%q, want %q (%v)", k, rec[k], v, rec)
		}
	}
	if srv.Queries("clean.e2e.test", dns.TypeTXT) == 0 {
		t.Error("greymilter never asked the test DNS server for the SPF policy")
	}

	rcpt = "t50s-dynamic@" + harness.Domain
	greylisted(t, "dynamic sender, first try", harness.Send(t, pf.Addr, dynamicSender(rcpt)).Rcpt[0])
	rec = decision(t, gm, rcpt, 1, "greylist", "new")
	for k, v := range map[string]string{"check_helo": "+2:mismatch", "check_dynamic": "+2:address:octets", "score": "4"} {
		if rec[k] != v {
			t.Errorf("dynamic sender: %s=%q, want %q (%v)", k, rec[k], v, rec)
		}
	}
}

// TestT50Always: in --mode always (the default) both senders wait.
func TestT50Always(t *testing.T) {
	t.Parallel()
	_, gm, pf := suspicionSystem(t)
	for name, env := range map[string]func(string) harness.Envelope{"clean": cleanSender, "dynamic": dynamicSender} {
		rcpt := "t50a-" + name + "@" + harness.Domain
		greylisted(t, name+" sender", harness.Send(t, pf.Addr, env(rcpt)).Rcpt[0])
		if rec := decision(t, gm, rcpt, 1, "greylist", "new"); rec["score"] != "" {
			t.Errorf("%s sender: scored in mode always: %v", name, rec)
		}
	}
}

// TestT50DryRun: with --dry-run both senders get 250 and their mail is
// delivered; the log shows the deferral the dynamic sender would have got.
func TestT50DryRun(t *testing.T) {
	t.Parallel()
	_, gm, pf := suspicionSystem(t, "--mode", "suspicious", "--dry-run")
	for name, env := range map[string]func(string) harness.Envelope{"clean": cleanSender, "dynamic": dynamicSender} {
		rcpt := "t50d-" + name + "@" + harness.Domain
		res := harness.Send(t, pf.Addr, env(rcpt))
		accepted(t, name+" sender", res.Rcpt[0])
		pf.WaitMessage(t, rcpt, res.MessageID)
	}
	decision(t, gm, "t50d-clean@"+harness.Domain, 1, "pass", "not-suspicious")
	if rec := decision(t, gm, "t50d-dynamic@"+harness.Domain, 1, "greylist", "new"); rec["dry_run"] != "true" || rec["score"] != "4" {
		t.Errorf("dynamic sender: %v, want dry_run=true score=4", rec)
	}
}

// TestT50SPFIdentity: a provider deferred at one address retries after the
// delay from another network its SPF policy authorises, and passes; a
// retry from an address the policy does not authorise is a new triplet.
func TestT50SPFIdentity(t *testing.T) {
	t.Parallel()
	_, gm, pf := suspicionSystem(t)
	rcpt := "t50i@" + harness.Domain
	first := cleanSender(rcpt)
	wait := greylisted(t, "first attempt", harness.Send(t, pf.Addr, first).Rcpt[0])
	if rec := decision(t, gm, rcpt, 1, "greylist", "new"); rec["triplet_client"] != "spf:clean.e2e.test" {
		t.Errorf("first attempt: %v, want triplet_client=spf:clean.e2e.test", rec)
	}
	sleepFor(wait)

	stranger := first
	stranger.ClientAddr, stranger.ClientName, stranger.Helo = "203.0.113.60", "mx.stranger.e2e.test", "mx.stranger.e2e.test"
	greylisted(t, "retry from an address the policy does not authorise", harness.Send(t, pf.Addr, stranger).Rcpt[0])
	if rec := decision(t, gm, rcpt, 2, "greylist", "new"); rec["spf"] != "fail" || rec["triplet_client"] != "203.0.113.0/24" {
		t.Errorf("stranger: %v, want spf=fail triplet_client=203.0.113.0/24", rec)
	}

	other := first
	other.ClientAddr, other.ClientName, other.Helo = "192.0.2.77", "mail2.clean.e2e.test", "mail2.clean.e2e.test"
	res := harness.Send(t, pf.Addr, other)
	accepted(t, "retry from another network of the pool", res.Rcpt[0])
	msg := pf.WaitMessage(t, rcpt, res.MessageID)
	if h := msg.Header.Get("X-Greylist"); !strings.HasPrefix(h, "delayed ") {
		t.Errorf("X-Greylist %q, want \"delayed N seconds ...\"", h)
	}
	decision(t, gm, rcpt, 3, "pass", "passed")
}
