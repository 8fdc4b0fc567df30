package e2e

import (
	"net/mail"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

var xGreylist = regexp.MustCompile(`^delayed (\d+) seconds by greymilter at ` + regexp.QuoteMeta(hostname) + `; (.+)$`)

// TestT03PassAfterDelay: a retry after the delay is accepted and the
// message arrives in the mailbox with an X-Greylist header that tells how
// long it was delayed.
func TestT03PassAfterDelay(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	rcpt := "t03@" + harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.13", From: "alice@client.example", To: []string{rcpt}}

	start := time.Now()
	sleepFor(greylisted(t, "first delivery", harness.Send(t, pf.Addr, env).Rcpt[0]))
	res := harness.Send(t, pf.Addr, env)
	accepted(t, "retry after the delay", res.Rcpt[0])
	if res.Data.Code != 250 {
		t.Fatalf("end of data: %v, want 250", res.Data)
	}
	elapsed := time.Since(start)
	decision(t, gm, rcpt, 2, "pass", "passed")

	msg := pf.WaitMessage(t, rcpt, res.MessageID)
	if n := len(msg.Header["X-Greylist"]); n != 1 {
		t.Fatalf("message has %d X-Greylist headers, want 1:\n%v", n, msg.Header)
	}
	h := msg.Header.Get("X-Greylist")
	m := xGreylist.FindStringSubmatch(h)
	if m == nil {
		t.Fatalf("X-Greylist: %q, want %q", h, "delayed N seconds by greymilter at "+hostname+"; DATE")
	}
	if n, _ := strconv.Atoi(m[1]); n < int(delay/time.Second) || n > int(elapsed/time.Second)+1 {
		t.Errorf("X-Greylist: delayed %d seconds, want %v to %v", n, delay, elapsed)
	}
	if date, err := mail.ParseDate(m[2]); err != nil {
		t.Errorf("X-Greylist date %q: %v", m[2], err)
	} else if d := time.Since(date); d < -time.Minute || d > time.Minute {
		t.Errorf("X-Greylist date %v is not now", date)
	}
}
