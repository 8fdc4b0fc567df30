package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT10LoopbackTrusted: clients in the default trusted networks
// (loopback) are not greylisted. Without XCLIENT the client is 127.0.0.1.
func TestT10LoopbackTrusted(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	rcpt := "t10@" + harness.Domain
	res := harness.Send(t, pf.Addr, harness.Envelope{From: "alice@client.example", To: []string{rcpt}})
	accepted(t, "first delivery from 127.0.0.1", res.Rcpt[0])
	decision(t, gm, rcpt, 1, "pass", "trusted")
	if msg := pf.WaitMessage(t, rcpt, res.MessageID); msg.Header.Get("X-Greylist") != "" {
		t.Errorf("trusted mail got X-Greylist: %s", msg.Header.Get("X-Greylist"))
	}
}
