package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT02ImmediateRetryGreylisted: a retry before the delay is over is
// deferred again, with a wait no larger than the first one.
func TestT02ImmediateRetryGreylisted(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	rcpt := "t02@" + harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.12", ClientName: "mail.client.example", From: "alice@client.example", To: []string{rcpt}}

	first := greylisted(t, "first delivery", harness.Send(t, pf.Addr, env).Rcpt[0])
	retry := greylisted(t, "immediate retry", harness.Send(t, pf.Addr, env).Rcpt[0])
	if retry > first {
		t.Errorf("retry told to wait %d seconds, more than the first %d", retry, first)
	}
	decision(t, gm, rcpt, 2, "greylist", "early-retry")
}
