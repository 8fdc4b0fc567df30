package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT06MilterKilledTempfails: with greymilter killed, Postfix
// (milter_default_action = tempfail) answers 4xx, even for a triplet that
// had passed: nothing is accepted unchecked.
func TestT06MilterKilledTempfails(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	rcpt := "t06@" + harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.16", From: "alice@client.example", To: []string{rcpt}}

	sleepFor(greylisted(t, "first delivery", harness.Send(t, pf.Addr, env).Rcpt[0]))
	accepted(t, "retry after the delay", harness.Send(t, pf.Addr, env).Rcpt[0])

	gm.Kill()
	res := harness.Send(t, pf.Addr, env)
	refusal := res.Refusal()
	if refusal.Code/100 != 4 {
		t.Fatalf("greymilter down: first refusal %v, want a 4xx (%+v)", refusal, res)
	}
	t.Logf("greymilter down: Postfix answers %v", refusal)
	for i, r := range res.Rcpt {
		if r.Code/100 == 2 {
			t.Errorf("greymilter down: recipient %d accepted: %v", i, r)
		}
	}
	if res.Data.Code != 0 {
		t.Errorf("greymilter down: the message was sent (%v)", res.Data)
	}
}
