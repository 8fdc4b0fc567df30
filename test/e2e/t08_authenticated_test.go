package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT08AuthenticatedSenderPasses: a SASL-authenticated client (XCLIENT
// LOGIN=, which Postfix gives milters as {auth_authen}) is not greylisted;
// the same envelope without authentication is.
func TestT08AuthenticatedSenderPasses(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	rcpt := "t08@" + harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.18", Login: "joe", From: "joe@client.example", To: []string{rcpt}}

	res := harness.Send(t, pf.Addr, env)
	accepted(t, "authenticated first delivery", res.Rcpt[0])
	if res.Data.Code != 250 {
		t.Fatalf("end of data: %v, want 250", res.Data)
	}
	rec := decision(t, gm, rcpt, 1, "pass", "authenticated")
	if rec["auth_user"] != "joe" {
		t.Errorf("logged auth_user=%q, want joe (%v)", rec["auth_user"], rec)
	}
	if msg := pf.WaitMessage(t, rcpt, res.MessageID); msg.Header.Get("X-Greylist") != "" {
		t.Errorf("authenticated mail got X-Greylist: %s", msg.Header.Get("X-Greylist"))
	}

	env.Login = ""
	greylisted(t, "same envelope unauthenticated", harness.Send(t, pf.Addr, env).Rcpt[0])
}
