package e2e

import (
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT05PerRecipientReplies: in one transaction a recipient whose triplet
// is due passes while a new one is deferred; the message is delivered to
// the first only.
func TestT05PerRecipientReplies(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	due, fresh := "t05-due@"+harness.Domain, "t05-new@"+harness.Domain
	env := harness.Envelope{ClientAddr: "2001:db8:15::1", From: "alice@client.example", To: []string{due}}

	sleepFor(greylisted(t, "first delivery", harness.Send(t, pf.Addr, env).Rcpt[0]))
	env.To = []string{due, fresh}
	res := harness.Send(t, pf.Addr, env)
	if len(res.Rcpt) != 2 {
		t.Fatalf("transaction: %+v", res)
	}
	accepted(t, "recipient whose delay is over", res.Rcpt[0])
	greylisted(t, "new recipient in the same transaction", res.Rcpt[1])
	if res.Data.Code != 250 {
		t.Fatalf("end of data: %v, want 250", res.Data)
	}
	decision(t, gm, due, 2, "pass", "passed")
	decision(t, gm, fresh, 1, "greylist", "new")

	msg := pf.WaitMessage(t, due, res.MessageID)
	if msg.Header.Get("X-Greylist") == "" {
		t.Errorf("message for %s has no X-Greylist header", due)
	}
	// Both copies would be delivered together; give a stray one a moment.
	time.Sleep(500 * time.Millisecond)
	if msgs := pf.Messages(t, fresh); len(msgs) != 0 {
		t.Errorf("%d messages delivered to the deferred recipient %s", len(msgs), fresh)
	}
}
