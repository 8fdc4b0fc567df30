package e2e

import (
	"strconv"
	"testing"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// TestT41PolicyDNSBLCodes: through check_policy_service, a DNSBL rejection
// reaches the SMTP client with the configured code and enhanced code (a
// temporary --dnsbl-code stays temporary) and a list's own --dnsbl-reply,
// as through the milter, and {TXT} the list's own reason: the policy
// server answers a plain SMTP reply, not
// REJECT, which Postfix would turn into its access_map_reject_code (554).
func TestT41PolicyDNSBLCodes(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix")
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	const listed = "203.0.113.1"
	cases := []struct {
		name  string
		args  []string
		reply string // after "<rcpt>: Recipient address rejected: "
		code  int
		ecode string
	}{
		{"default code", nil, "Rejected. Address 203.0.113.1 found in bl.e2e.test", 550, "5.7.1"},
		{"temporary code", []string{"--dnsbl-code", "451", "--dnsbl-ecode", "4.7.1"},
			"Rejected. Address 203.0.113.1 found in bl.e2e.test", 451, "4.7.1"},
		{"per-list reply", []string{"--dnsbl-reply", "bl.e2e.test=553 5.7.2 Listed at bl.e2e.test: {ADDR}"},
			"Listed at bl.e2e.test: 203.0.113.1", 553, "5.7.2"},
		{"list's TXT reason", []string{"--dnsbl-text", "Blocked: {TXT}"},
			"Blocked: Listed by bl.e2e.test, see https://bl.e2e.test/q/203.0.113.1", 550, "5.7.1"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			gm, pf := policySetup(t, append([]string{"--delay", "1h", "--dns", srv.Addr(), "-a", "bl.e2e.test"}, c.args...)...)
			rcpt := "t41-" + strconv.Itoa(i) + "@" + harness.Domain
			res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: listed, From: "a@sender.example", To: []string{rcpt}})
			r := res.Rcpt[0]
			want := "<" + rcpt + ">: Recipient address rejected: " + c.reply
			if r.Code != c.code || r.Enhanced != c.ecode || r.Text != want {
				t.Errorf("RCPT got %q, want %d %s %s", r.String(), c.code, c.ecode, want)
			}
			decision(t, gm, rcpt, 1, "reject", "dnsbl")
		})
	}
}
