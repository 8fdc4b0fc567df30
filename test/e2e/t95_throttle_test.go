package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT95ThrottleNewTriplets runs the rate limit through the real binary
// and Postfix: with --max-new-triplets 2 the first two new triplets of a
// subnet are greylisted (451), the third and what follows get 421 4.7.0
// for --throttle-time, logged once and counted in the metrics; after it
// greylisting resumes.
func TestT95ThrottleNewTriplets(t *testing.T) {
	t.Parallel()
	const throttle = 5 * time.Second
	gm, pf := system(t, "--max-new-triplets", "2", "--throttle-time", throttle.String(), "--metrics-listen", "127.0.0.1:0")
	send := func(i int) harness.Reply {
		t.Helper()
		env := harness.Envelope{ClientAddr: "192.0.2.80", ClientName: "mail.sender.example", Helo: "mail.sender.example",
			From: "alice@sender.example", To: []string{fmt.Sprintf("rcpt%d-t95@%s", i, harness.Domain)}}
		// Postfix closes the connection after a 421: QUIT may fail.
		res, err := harness.SendEnvelope(pf.Addr, env)
		if len(res.Rcpt) != 1 {
			t.Fatalf("mail %d: no RCPT reply (%v)", i, err)
		}
		return res.Rcpt[0]
	}
	for i := range 2 {
		greylisted(t, fmt.Sprintf("new triplet %d of 2", i+1), send(i))
	}
	r := send(2)
	start := time.Now()
	if r.Code != 421 || !strings.HasPrefix(r.String(), "421 4.7.0 Too many new senders") {
		t.Fatalf("third new triplet: %q, want 421 4.7.0", r)
	}
	if r := send(3); r.Code != 421 {
		t.Errorf("during the episode: %q, want 421", r)
	}
	if time.Since(start) >= throttle {
		t.Fatalf("the machine is too slow for this test's %v throttle time", throttle)
	}
	m := metrics(t, gm)
	for _, want := range []string{"greymilter_throttle_episodes_total 1\n", "greymilter_throttle_refused_total 2\n", "greymilter_throttled_subnets 1\n",
		`greymilter_decisions_total{action="greylist",reason="throttled"} 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	time.Sleep(time.Until(start.Add(throttle + 500*time.Millisecond)))
	greylisted(t, "after the throttle time", send(4))
	if n := strings.Count(gm.Log(), "client subnet throttled"); n != 1 {
		t.Errorf("episode logged %d times, want once", n)
	}
}

// TestT95ThrottlePolicy: the same through the policy server: the 421 goes
// to Postfix as a plain reply and Postfix passes its code on.
func TestT95ThrottlePolicy(t *testing.T) {
	t.Parallel()
	_, pf := policySetup(t, "--delay", "1h", "--max-new-triplets", "1")
	send := func(i int) harness.Reply {
		t.Helper()
		env := harness.Envelope{ClientAddr: "192.0.2.80", ClientName: "mail.sender.example", Helo: "mail.sender.example",
			From: "alice@sender.example", To: []string{fmt.Sprintf("policy%d-t95@%s", i, harness.Domain)}}
		res, err := harness.SendEnvelope(pf.Addr, env)
		if len(res.Rcpt) != 1 {
			t.Fatalf("mail %d: no RCPT reply (%v)", i, err)
		}
		return res.Rcpt[0]
	}
	policyWait(t, "first new triplet", send(0))
	if r := send(1); r.Code != 421 || r.Enhanced != "4.7.0" || !strings.Contains(r.Text, "Too many new senders") {
		t.Errorf("second new triplet: %q, want 421 4.7.0", r)
	}
}
