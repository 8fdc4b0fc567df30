package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT97SlowRetriers runs --learn-slow-retriers through the real binary
// and Postfix, with the timing shrunk to seconds: a sender domain whose
// mail came back after the retry window from two subnets, and then
// passed, is learned (logged); afterwards its retry after the window
// passes instead of starting greylisting again, while another domain's
// starts again. What was learned survives a restart.
func TestT97SlowRetriers(t *testing.T) {
	t.Parallel()
	const window, late, afterDelay = 4 * time.Second, 6 * time.Second, 1500 * time.Millisecond
	gm := harness.Greymilter(t, "--delay", "1s", "--retry-window", window.String(), "--purge-unverified", "1m",
		"--learn-slow-retriers", "--max-slow-retry", "30s", "--slow-retrier-clients", "2")
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	send := func(addr, from, to string) harness.Reply {
		t.Helper()
		return harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: addr, Helo: "mail.slow.example", From: from, To: []string{to}}).Rcpt[0]
	}
	deferred := func(what string, r harness.Reply) {
		t.Helper()
		if r.Code != 451 || r.Enhanced != "4.7.1" {
			t.Fatalf("%s: %v, want 451 4.7.1", what, r)
		}
	}
	lateThenPass := func(addr, to string) {
		t.Helper()
		deferred(addr+": first attempt", send(addr, "news@slow.example", to))
		time.Sleep(late)
		deferred(addr+": retry after the window", send(addr, "news@slow.example", to))
		time.Sleep(afterDelay)
		accepted(t, addr+": retry after the delay", send(addr, "news@slow.example", to))
	}
	lateThenPass("192.0.2.82", "r1-t97@"+harness.Domain)
	if strings.Contains(gm.Log(), "slow retrier learned") {
		t.Fatal("learned from one client")
	}
	lateThenPass("198.51.100.82", "r2-t97@"+harness.Domain)
	rec := gm.WaitRecord(func(r harness.LogRecord) bool { return strings.HasPrefix(r["msg"], "slow retrier learned") })
	if rec["domain"] != "slow.example" {
		t.Errorf("learned %q, want slow.example", rec["domain"])
	}
	// The admin sees it through the running daemon, with its evidence:
	// two clients retried late, both then passed.
	out := mustDB(t, gm, "slow.example", "list", "--slow-retriers")
	if !regexp.MustCompile(`(?m)^slow\.example +2 +2 +`).MatchString(out) || !strings.Contains(out, "1 domains") {
		t.Errorf("db list --slow-retriers:\n%s\nwant slow.example with 2 late clients, 2 passed", out)
	}
	if out := mustDB(t, gm, "0 domains", "list", "--slow-retriers", "--domain", "fast.example"); strings.Contains(out, "slow.example") {
		t.Errorf("db list --slow-retriers --domain fast.example:\n%s", out)
	}

	deferred("learned: first attempt", send("192.0.2.82", "news@slow.example", "r3-t97@"+harness.Domain))
	deferred("other domain: first attempt", send("192.0.2.82", "news@fast.example", "r3-t97@"+harness.Domain))
	time.Sleep(late)
	accepted(t, "learned: retry after the window", send("192.0.2.82", "news@slow.example", "r3-t97@"+harness.Domain))
	deferred("other domain: retry after the window", send("192.0.2.82", "news@fast.example", "r3-t97@"+harness.Domain))

	// What was learned is in the database: it survives a restart.
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	gm.Restart()
	deferred("after a restart: first attempt", send("203.0.113.82", "news@slow.example", "r4-t97@"+harness.Domain))
	time.Sleep(late)
	accepted(t, "after a restart: retry after the window", send("203.0.113.82", "news@slow.example", "r4-t97@"+harness.Domain))
}
