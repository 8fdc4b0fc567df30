package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// docACLSocket is the policy socket that docs/policyd.md's Exim ACL asks.
const docACLSocket = "inet:127.0.0.1:10023"

// eximACL returns the Exim ACL of docs/policyd.md (its exim code block) as
// written there, asking greymilter's policy server at addr instead.
func eximACL(t *testing.T, addr string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/policyd.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)\n```exim\n(.*?)\n```\n").FindSubmatch(doc)
	if m == nil || !strings.Contains(string(m[1]), docACLSocket) {
		t.Fatalf("docs/policyd.md has no exim code block asking %s", docACLSocket)
	}
	return strings.ReplaceAll(string(m[1]), docACLSocket, "inet:"+addr)
}

// eximSetup starts greymilter as a policy server in Exim mode (args added)
// and writes an Exim configuration with the documented ACL.
func eximSetup(t *testing.T, args ...string) (*harness.GreymilterProcess, *harness.EximInstance) {
	t.Helper()
	harness.Require(t, "exim4") // before building greymilter for nothing
	gm := harness.Greymilter(t, append([]string{"--policy-socket", "inet:127.0.0.1:0", "--policy-close-after-reply"}, args...)...)
	return gm, harness.Exim(t, harness.EximOptions{RcptACL: eximACL(t, gm.PolicyAddr())})
}

// TestT70EximGreylisting runs the documented Exim ACL in a real Exim
// (exim -bh): the first RCPT is deferred with greymilter's text and code,
// an early retry too, and the retry after the delay passes with the
// X-Greylist header added.
func TestT70EximGreylisting(t *testing.T) {
	t.Parallel()
	gm, ex := eximSetup(t, "--delay", delay.String(), "--hostname", hostname)
	rcpt := "bob-t70@" + harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.70", Helo: "mail.sender.example", From: "alice@sender.example", To: []string{rcpt}}

	res, trace := ex.Send(t, env)
	first := greylisted(t, "first attempt", res.Rcpt[0])
	start := time.Now()
	if res.Data.Code != 0 {
		t.Errorf("DATA after the only recipient was deferred: %v", res.Data)
	}
	rec := decision(t, gm, rcpt, 1, "greylist", "new")
	if rec["client"] != "192.0.2.70" || strings.Trim(rec["sender"], "<>") != env.From {
		t.Errorf("greymilter was asked about %v, want client 192.0.2.70 and sender %s", rec, env.From)
	}
	if strings.Contains(strings.Join(harness.EximLog(trace), "\n"), "greymilter did not answer") {
		t.Errorf("Exim used the fail string:\n%s", trace)
	}

	res, _ = ex.Send(t, env)
	if again := greylisted(t, "early retry", res.Rcpt[0]); again > first {
		t.Errorf("early retry: wait %d, more than the first %d", again, first)
	}

	time.Sleep(time.Until(start.Add(time.Duration(first)*time.Second + 500*time.Millisecond)))
	res, trace = ex.Send(t, env)
	accepted(t, "retry after the delay", res.Rcpt[0])
	if res.Data.Code != 250 {
		t.Errorf("DATA: %v", res.Data)
	}
	decision(t, gm, rcpt, 3, "pass", "passed")
	if !regexp.MustCompile(`check add_header = .*\n>>> +\= X-Greylist: delayed [3-9] seconds by greymilter at ` + regexp.QuoteMeta(hostname) + `; `).MatchString(trace) {
		t.Errorf("no X-Greylist header added in Exim's trace:\n%s", trace)
	}
}

// TestT70EximReject: a client greymilter rejects (the administrator's
// blacklist) gets Exim's 550 with greymilter's enhanced code and text.
func TestT70EximReject(t *testing.T) {
	t.Parallel()
	bl := filepath.Join(t.TempDir(), "blacklist_clients")
	if err := os.WriteFile(bl, []byte("192.0.2.72\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, ex := eximSetup(t, "--delay", "1h", "--blacklist-clients", bl)
	res, trace := ex.Send(t, harness.Envelope{ClientAddr: "192.0.2.72", From: "spam@sender.example", To: []string{"t70r@" + harness.Domain}})
	// Exim folds a long reply into lines of its own.
	if got, want := strings.ReplaceAll(res.Rcpt[0].String(), "\n", " "), "550 5.7.1 Rejected by local policy: 192.0.2.72 <spam@sender.example> is blacklisted"; got != want {
		t.Errorf("RCPT: %q, want %q\n%s", got, want, trace)
	}
}

// TestT70EximSlowDecision: a decision that waits on a DNS list that never
// answers takes longer than readsocket's default 5s; the documented
// timeout still gets greymilter's answer. With a timeout shorter than the
// decision, Exim accepts the recipient without greylisting and logs why.
func TestT70EximSlowDecision(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	srv.SetDrop("71.2.0.192.bl.e2e.test")
	// The second client's own name: greymilter remembers a name that
	// timed out, so the first client's would now fail at once.
	srv.SetDrop("72.2.0.192.bl.e2e.test")
	const dnsTimeout = 6 * time.Second
	gm, ex := eximSetup(t, "--delay", "1h", "--dns", srv.Addr(), "-a", "bl.e2e.test", "--dns-timeout", dnsTimeout.String(),
		// DNS may take at most half of a decision's time.
		"--decision-timeout", (2 * dnsTimeout).String())
	env := harness.Envelope{ClientAddr: "192.0.2.71", From: "alice@sender.example", To: []string{"slow-t70@" + harness.Domain}}

	began := time.Now()
	res, trace := ex.Send(t, env)
	took := time.Since(began)
	if r := res.Rcpt[0]; r.Code != 451 || r.Enhanced != "4.7.1" || !strings.HasPrefix(r.Text, "Greylisted") {
		t.Fatalf("slow decision with the documented timeout: %v after %v, want greymilter's deferral\n%s", r, took, trace)
	}
	if took < dnsTimeout-time.Second {
		t.Errorf("the decision took %v, want about the DNS timeout %v: the test proves nothing", took, dnsTimeout)
	}
	decision(t, gm, env.To[0], 1, "greylist", "new")

	// A readsocket timeout below the decision's time: Exim gives up.
	short := harness.Exim(t, harness.EximOptions{RcptACL: strings.Replace(eximACL(t, gm.PolicyAddr()), "{15s}", "{2s}", 1)})
	env.ClientAddr = "192.0.2.72"
	env.To = []string{"short-t70@" + harness.Domain}
	res, trace = short.Send(t, env)
	accepted(t, "readsocket timed out", res.Rcpt[0])
	logged := strings.Join(harness.EximLog(trace), "\n")
	if !strings.Contains(logged, "greymilter did not answer within 15s: recipient not greylisted") {
		t.Errorf("Exim logged %q, want the documented warning\n%s", logged, trace)
	}
}
