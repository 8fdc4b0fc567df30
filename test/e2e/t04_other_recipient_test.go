package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT04OtherRecipientGreylisted: once a triplet passed, the same client
// and sender writing to another recipient make a new triplet, greylisted
// again.
func TestT04OtherRecipientGreylisted(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	first, other := "t04@"+harness.Domain, "t04-other@"+harness.Domain
	env := harness.Envelope{ClientAddr: "198.51.100.14", From: "alice@client.example", To: []string{first}}

	sleepFor(greylisted(t, "first delivery", harness.Send(t, pf.Addr, env).Rcpt[0]))
	accepted(t, "retry after the delay", harness.Send(t, pf.Addr, env).Rcpt[0])

	env.To = []string{other}
	greylisted(t, "another recipient", harness.Send(t, pf.Addr, env).Rcpt[0])
	decision(t, gm, other, 1, "greylist", "new")
}
