package e2e

import (
	"fmt"
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT12SessionTransactions: several transactions in one SMTP session each
// get their own decisions and headers. The message of two recipients that
// both passed after the delay carries one X-Greylist; the next message, for
// a triplet that is merely known, none; a new sender in the same session
// makes a new triplet.
func TestT12SessionTransactions(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	a, b := "t12-a@"+harness.Domain, "t12-b@"+harness.Domain
	const client, sender = "203.0.113.12", "alice@client.example"
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: client, From: sender, To: []string{a, b}})
	greylisted(t, "first delivery to "+a, res.Rcpt[0])
	sleepFor(greylisted(t, "first delivery to "+b, res.Rcpt[1]))

	c, greeting, err := harness.Dial(pf.Addr)
	if err != nil || greeting.Code != 220 {
		t.Fatalf("connect: %v %v", greeting, err)
	}
	defer c.Close()
	// must fails the test on a broken connection (err names the command).
	must := func(r harness.Reply, err error) harness.Reply {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	must(c.Ehlo("client.example"))
	must(c.XClient(client, "", ""))
	must(c.Ehlo("client.example"))
	// transaction sends one message from sender to rcpts and returns the
	// replies to RCPT and the delivered message's X-Greylist headers.
	n := 0
	transaction := func(sender string, rcpts ...string) ([]harness.Reply, []string) {
		t.Helper()
		n++
		if r := must(c.Mail(sender)); r.Code != 250 {
			t.Fatalf("transaction %d: MAIL: %v", n, r)
		}
		var replies []harness.Reply
		for _, rcpt := range rcpts {
			replies = append(replies, must(c.Rcpt(rcpt)))
		}
		if replies[0].Code != 250 {
			must(c.Rset())
			return replies, nil
		}
		id := fmt.Sprintf("<t12-%d@client.example>", n)
		msg := fmt.Sprintf("Message-ID: %s\r\nSubject: transaction %d\r\n\r\nbody\r\n", id, n)
		if r := must(c.Data([]byte(msg))); r.Code != 250 {
			t.Fatalf("transaction %d: end of data: %v", n, r)
		}
		return replies, pf.WaitMessage(t, rcpts[0], id).Header["X-Greylist"]
	}

	replies, headers := transaction(sender, a, b)
	accepted(t, "transaction 1, "+a, replies[0])
	accepted(t, "transaction 1, "+b, replies[1])
	if len(headers) != 1 {
		t.Errorf("transaction 1: %d X-Greylist headers, want 1: %q", len(headers), headers)
	}

	replies, headers = transaction(sender, a)
	accepted(t, "transaction 2, "+a, replies[0])
	if len(headers) != 0 {
		t.Errorf("transaction 2 (known triplet): X-Greylist %q, want none", headers)
	}
	decision(t, gm, a, 3, "pass", "known")

	replies, _ = transaction("bob@client.example", a)
	greylisted(t, "transaction 3, new sender", replies[0])
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}
