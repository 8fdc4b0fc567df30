package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// dnsSystem starts a DNS server with the T30 lists, greymilter asking it
// (a 1h delay, so that only the lists let a first attempt through, plus
// args) and a Postfix that uses greymilter as its milter.
func dnsSystem(t *testing.T, args ...string) (*dnstest.Server, *harness.GreymilterProcess, *harness.PostfixInstance) {
	t.Helper()
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	gm := harness.Greymilter(t, append([]string{"--delay", "1h", "--dns", srv.Addr()}, args...)...)
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	return srv, gm, pf
}

// TestT30DNSLists: a client on the DNSBL gets 550 5.7.1 naming the zone
// (IPv4 and IPv6), a client on the DNSWL passes on the first attempt, a
// client on neither is greylisted; every answer came from the DNS server.
func TestT30DNSLists(t *testing.T) {
	t.Parallel()
	srv, gm, pf := dnsSystem(t, "-a", "bl.e2e.test", "--addwl", "wl.e2e.test")
	cases := []struct {
		name, client string
		reply        string // the whole RCPT reply, or just its code
		reason       string
	}{
		{"listed client", "203.0.113.1", "550 5.7.1 Rejected. Address 203.0.113.1 found in bl.e2e.test", "dnsbl"},
		{"listed IPv6 client", "2001:db8:30::1", "550 5.7.1 Rejected. Address 2001:db8:30::1 found in bl.e2e.test", "dnsbl"},
		{"allow-listed client", "203.0.113.3", "250", "dnswl"},
		{"unlisted client", "203.0.113.4", "451", "new"},
	}
	for i, c := range cases {
		rcpt := "t30-" + strconv.Itoa(i) + "@" + harness.Domain
		res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: c.client, From: "a@sender.example", To: []string{rcpt}})
		if len(res.Rcpt) != 1 {
			t.Fatalf("%s: %+v", c.name, res)
		}
		r := res.Rcpt[0]
		if got := r.String(); got != c.reply && strconv.Itoa(r.Code) != c.reply {
			t.Errorf("%s: RCPT got %q, want %s", c.name, got, c.reply)
			continue
		}
		if r.Code == 250 {
			pf.WaitMessage(t, rcpt, res.MessageID)
		}
		rec := gm.WaitRecord(harness.DecisionFor(rcpt))
		if rec["reason"] != c.reason {
			t.Errorf("%s: decision %v, want reason=%s", c.name, rec, c.reason)
		}
	}
	if srv.Queries("1.113.0.203.bl.e2e.test", dns.TypeA) == 0 || srv.Queries("3.113.0.203.wl.e2e.test", dns.TypeA) == 0 {
		t.Error("greymilter never asked the test DNS server")
	}
	if strings.Contains(gm.Log(), "fails the RFC 5782 self-test") {
		t.Errorf("self-test warning for zones that pass it:\n%s", gm.Log())
	}
}

// TestT30DNSBLMark: with --dnsbl-action mark a listed client is greylisted
// like any other, and the message that passes carries X-RBL-Warning.
func TestT30DNSBLMark(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	gm, pf := system(t, "--dns", srv.Addr(), "-a", "bl.e2e.test", "--dnsbl-action", "mark")
	rcpt := "t30m@" + harness.Domain
	env := harness.Envelope{ClientAddr: "203.0.113.2", From: "a@sender.example", To: []string{rcpt}}
	sleepFor(greylisted(t, "first attempt", harness.Send(t, pf.Addr, env).Rcpt[0]))
	res := harness.Send(t, pf.Addr, env)
	accepted(t, "retry after the delay", res.Rcpt[0])
	if rec := decision(t, gm, rcpt, 2, "pass", "passed"); rec["dnsbl_action"] != "mark" {
		t.Errorf("decision %v, want dnsbl_action=mark", rec)
	}
	msg := pf.WaitMessage(t, rcpt, res.MessageID)
	if got := msg.Header["X-Rbl-Warning"]; len(got) != 1 || got[0] != "203.0.113.2 listed in bl.e2e.test" {
		t.Errorf("X-RBL-Warning %q, want one \"203.0.113.2 listed in bl.e2e.test\"\n%v", got, msg.Header)
	}
	if msg.Header.Get("X-Greylist") == "" {
		t.Errorf("no X-Greylist header:\n%v", msg.Header)
	}
}

// TestT30DeadDNS: with a DNS server that never answers, the lists abstain
// within one --dns-timeout for the whole decision, Postfix gets
// greymilter's own answer (not a milter timeout), and the log names the
// lists that abstained. A second recipient of the same message costs no
// second wait: the failures are remembered and the breaker is open.
func TestT30DeadDNS(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	gm, pf := system(t, "--dns", dnstest.Dead(t), "--dns-timeout", timeout.String(), "-a", "bl.e2e.test", "--addwl", "wl.e2e.test")
	rcpts := []string{"t30d@" + harness.Domain, "t30d2@" + harness.Domain}
	start := time.Now()
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "203.0.113.1", From: "a@sender.example", To: rcpts})
	elapsed := time.Since(start)
	t.Logf("two recipients with dead DNS: %v", elapsed)
	for i := range rcpts {
		greylisted(t, "listed client with a dead DNS server", res.Rcpt[i])
	}
	// The allow list, the block list and SPF at once, one budget for both
	// recipients, plus the SMTP transaction through Postfix (a few hundred
	// milliseconds; a second of margin for a loaded machine). Lookups in
	// turn, or per recipient, would take two to four budgets.
	if limit := timeout + 1500*time.Millisecond; elapsed > limit {
		t.Errorf("transaction took %v, want under %v", elapsed, limit)
	}
	rec := gm.WaitRecord(harness.DecisionFor(rcpts[0]))
	if !strings.HasPrefix(rec["dnsbl_abstained"], "bl.e2e.test: ") || !strings.HasPrefix(rec["dnswl_abstained"], "wl.e2e.test: ") {
		t.Errorf("decision %v, want dnsbl_abstained and dnswl_abstained", rec)
	}
	gm.WaitRecord(func(r harness.LogRecord) bool {
		return r["level"] == "WARN" && strings.Contains(r["msg"], "fails the RFC 5782 self-test") && r["zone"] == "bl.e2e.test"
	})
}
