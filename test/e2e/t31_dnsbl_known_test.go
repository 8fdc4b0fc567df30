package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// TestT31DNSBLKnownClients: a listing is newer information than a past
// pass. A triplet passes greylisting from an unlisted host of
// 203.0.113.0/24 (so the whole /24 is known for it); the same triplet then
// comes from listed hosts of that /24. With --dnsbl-action reject it is
// rejected, with mark it passes with X-RBL-Warning, with greylist it keeps
// passing as known.
func TestT31DNSBLKnownClients(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	for _, c := range []struct {
		action string
		client string // a listed host of the known /24
	}{{"reject", "203.0.113.1"}, {"mark", "203.0.113.2"}, {"greylist", "203.0.113.1"}} {
		t.Run(c.action, func(t *testing.T) {
			t.Parallel()
			gm, pf := system(t, "--dns", srv.Addr(), "-a", "bl.e2e.test", "--dnsbl-action", c.action)
			rcpt := "t31-" + c.action + "@" + harness.Domain
			env := harness.Envelope{ClientAddr: "203.0.113.9", From: "a@sender.example", To: []string{rcpt}}
			sleepFor(greylisted(t, "first attempt from an unlisted host", harness.Send(t, pf.Addr, env).Rcpt[0]))
			accepted(t, "retry after the delay", harness.Send(t, pf.Addr, env).Rcpt[0])
			decision(t, gm, rcpt, 2, "pass", "passed")

			env.ClientAddr = c.client
			res := harness.Send(t, pf.Addr, env)
			r := res.Rcpt[0]
			switch c.action {
			case "reject":
				if want := "550 5.7.1 Rejected. Address 203.0.113.1 found in bl.e2e.test"; r.String() != want {
					t.Errorf("known triplet from a listed host: %q, want %q", r.String(), want)
				}
				decision(t, gm, rcpt, 3, "reject", "dnsbl")
			case "mark":
				accepted(t, "known triplet from a listed host", r)
				msg := pf.WaitMessage(t, rcpt, res.MessageID)
				if got := msg.Header["X-Rbl-Warning"]; len(got) != 1 || got[0] != "203.0.113.2 listed in bl.e2e.test" {
					t.Errorf("X-RBL-Warning %q, want one \"203.0.113.2 listed in bl.e2e.test\"", got)
				}
				if rec := decision(t, gm, rcpt, 3, "pass", "known"); rec["dnsbl_action"] != "mark" {
					t.Errorf("decision %v, want dnsbl_action=mark", rec)
				}
			case "greylist":
				accepted(t, "known triplet from a listed host", r)
				decision(t, gm, rcpt, 3, "pass", "known")
			}
		})
	}
}
