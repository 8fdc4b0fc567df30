package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

// TestT83TwoMXOnePostgreSQL: two Postfix instances (MX 1 and MX 2), each
// with its own greymilter as its milter, one PostgreSQL behind both. A
// sender deferred at MX 1 that retries at MX 2 after the delay is
// delivered there, with the X-Greylist header.
func TestT83TwoMXOnePostgreSQL(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix")
	dsn := pgtest.Shared(t).NewDatabase(t)
	args := []string{"--db", dsn, "--delay", delay.String(), "--hostname", hostname}
	gm1, gm2 := harness.Greymilter(t, args...), harness.Greymilter(t, args...)
	mx1 := harness.Postfix(t, harness.PostfixOptions{Milter: gm1.Socket})
	mx2 := harness.Postfix(t, harness.PostfixOptions{Milter: gm2.Socket})
	rcpt := "t83@" + harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.63", From: "alice@client.example", To: []string{rcpt}}

	start := time.Now()
	sleepFor(greylisted(t, "first delivery at MX 1", harness.Send(t, mx1.Addr, env).Rcpt[0]))
	decision(t, gm1, rcpt, 1, "greylist", "new")
	res := harness.Send(t, mx2.Addr, env)
	accepted(t, "retry at MX 2 after the delay", res.Rcpt[0])
	if res.Data.Code != 250 {
		t.Fatalf("end of data at MX 2: %v, want 250", res.Data)
	}
	decision(t, gm2, rcpt, 1, "pass", "passed")
	msg := mx2.WaitMessage(t, rcpt, res.MessageID)
	m := xGreylist.FindStringSubmatch(msg.Header.Get("X-Greylist"))
	if m == nil || len(msg.Header["X-Greylist"]) != 1 {
		t.Fatalf("message at MX 2: X-Greylist %q, want one %q", msg.Header["X-Greylist"], "delayed N seconds by greymilter at "+hostname+"; DATE")
	}
	elapsed := time.Since(start)
	if n, _ := strconv.Atoi(m[1]); n < int(delay/time.Second) || n > int(elapsed/time.Second)+1 {
		t.Errorf("X-Greylist: delayed %d seconds, want %v to %v", n, delay, elapsed)
	}
}
