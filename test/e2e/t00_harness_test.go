package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT00PostfixHarness checks the harness itself, without a milter: a
// private Postfix accepts mail from a client posed with XCLIENT and
// delivers it into the recipient's Maildir, with the posed client in the
// Received header.
func TestT00PostfixHarness(t *testing.T) {
	t.Parallel()
	pf := harness.Postfix(t, harness.PostfixOptions{})
	rcpt := "t00@" + harness.Domain
	res := harness.Send(t, pf.Addr, harness.Envelope{
		ClientAddr: "192.0.2.1",
		ClientName: "mail.client.example",
		Helo:       "mail.client.example",
		From:       "sender@client.example",
		To:         []string{rcpt},
	})
	if res.Refusal().Code != 0 || len(res.Rcpt) != 1 || res.Rcpt[0].Code != 250 || res.Data.Code != 250 {
		t.Fatalf("transaction refused: %+v", res)
	}
	msg := pf.WaitMessage(t, rcpt, res.MessageID)
	received := msg.Header.Get("Received")
	if !strings.Contains(received, "mail.client.example [192.0.2.1]") {
		t.Errorf("Received: %q, want the XCLIENT client mail.client.example [192.0.2.1]", received)
	}
}

// TestT00PostfixHarnessIPv6Login checks XCLIENT with an IPv6 address and a
// SASL login, which Postfix records as the session's sasl_username.
func TestT00PostfixHarnessIPv6Login(t *testing.T) {
	t.Parallel()
	pf := harness.Postfix(t, harness.PostfixOptions{})
	rcpt := "t00v6@" + harness.Domain
	res := harness.Send(t, pf.Addr, harness.Envelope{
		ClientAddr: "2001:db8::25",
		Login:      "joe",
		From:       "joe@client.example",
		To:         []string{rcpt, "nobody@elsewhere.example"},
	})
	if len(res.Rcpt) != 2 || res.Rcpt[0].Code != 250 {
		t.Fatalf("transaction: %+v", res)
	}
	// An authenticated client may relay, but the instance sends nothing
	// out: the remote recipient passes the relay check (no "Relay access
	// denied") and meets the error transport.
	if r := res.Rcpt[1]; r.Code != 550 || !strings.Contains(r.Text, "no mail leaves a test instance") {
		t.Errorf("remote recipient for an authenticated client: %v, want 550 from the error transport", r)
	}
	msg := pf.WaitMessage(t, rcpt, res.MessageID)
	if r := msg.Header.Get("Received"); !strings.Contains(r, "[IPv6:2001:db8::25]") {
		t.Errorf("Received: %q, want the XCLIENT client [IPv6:2001:db8::25]", r)
	}
	if !strings.Contains(pf.Log(), "sasl_username=joe") {
		t.Errorf("mail log has no sasl_username=joe:\n%s", pf.Log())
	}
}

// TestT00PostfixHarnessSwaks delivers with swaks, a standard SMTP client,
// to check the instance against something else than the harness's client.
func TestT00PostfixHarnessSwaks(t *testing.T) {
	t.Parallel()
	harness.Require(t, "swaks")
	pf := harness.Postfix(t, harness.PostfixOptions{})
	rcpt := "swaks@" + harness.Domain
	out, err := exec.Command("swaks", "--server", pf.Addr, "--from", "sender@client.example", "--to", rcpt,
		"--header", "Message-Id: <t00-swaks@client.example>", "--xclient-addr", "198.51.100.7").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	msg := pf.WaitMessage(t, rcpt, "<t00-swaks@client.example>")
	if r := msg.Header.Get("Received"); !strings.Contains(r, "[198.51.100.7]") {
		t.Errorf("Received: %q, want the XCLIENT client [198.51.100.7]", r)
	}
}
