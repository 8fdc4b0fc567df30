package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT07RestartKeepsState: greymilter killed with SIGKILL, or stopped with
// SIGTERM, and started again on the same file database still knows the
// triplet that passed and the first sighting of the one that waits.
func TestT07RestartKeepsState(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	passed, waiting := "t07-passed@"+harness.Domain, "t07-waiting@"+harness.Domain
	env := harness.Envelope{ClientAddr: "198.51.100.17", From: "alice@client.example"}
	send := func(rcpt string) harness.Reply {
		env.To = []string{rcpt}
		return harness.Send(t, pf.Addr, env).Rcpt[0]
	}

	greylisted(t, "first delivery to "+passed, send(passed))
	sleepFor(greylisted(t, "first delivery to "+waiting, send(waiting)))
	accepted(t, "retry after the delay to "+passed, send(passed))

	gm.Kill()
	gm.Restart()
	accepted(t, "passed triplet after kill -9", send(passed))
	decision(t, gm, passed, 3, "pass", "known")
	// Its first delivery was before the crash and its delay is over.
	accepted(t, "waiting triplet after kill -9", send(waiting))

	if err := gm.Stop(); err != nil {
		t.Errorf("greymilter after SIGTERM: %v, want a clean exit", err)
	}
	gm.Restart()
	accepted(t, "passed triplet after SIGTERM", send(passed))
}
