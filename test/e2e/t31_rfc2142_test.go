package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// TestT31PostmasterAndAbuse: mail to postmaster@ and abuse@ (RFC 2142) is
// neither greylisted nor rejected for a DNSBL listing, through the milter
// and through the policy server; other recipients of the same transaction
// are; the administrator's blacklist still applies; --no-postmaster-exemption
// judges them like anyone else.
func TestT31PostmasterAndAbuse(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix")
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	bl := filepath.Join(t.TempDir(), "blacklist_clients")
	if err := os.WriteFile(bl, []byte("198.51.100.31\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--delay", "1h", "--dns", srv.Addr(), "-a", "bl.e2e.test", "--blacklist-clients", bl}
	for _, front := range []string{"milter", "policy"} {
		t.Run(front, func(t *testing.T) {
			t.Parallel()
			start := func(extra ...string) (*harness.GreymilterProcess, *harness.PostfixInstance) {
				a := append(append([]string{}, args...), extra...)
				if front == "milter" {
					gm := harness.Greymilter(t, a...)
					return gm, harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
				}
				gm := harness.Greymilter(t, append(a, "--policy-socket", "inet:127.0.0.1:0")...)
				return gm, harness.Postfix(t, harness.PostfixOptions{PolicyService: "inet:" + gm.PolicyAddr()})
			}
			postmaster, abuse, bob := "postmaster@"+harness.Domain, "Abuse@"+strings.ToUpper(harness.Domain), "bob-t31@"+harness.Domain
			gm, pf := start()
			for _, client := range []string{"203.0.113.1", "203.0.113.4"} { // DNSBL-listed, unlisted
				res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: client, From: "someone@sender.example", To: []string{postmaster, abuse, bob}})
				if len(res.Rcpt) != 3 {
					t.Fatalf("client %s: %+v", client, res)
				}
				accepted(t, client+" to "+postmaster, res.Rcpt[0])
				accepted(t, client+" to "+abuse, res.Rcpt[1])
				if res.Rcpt[2].Code/100 == 2 {
					t.Errorf("client %s to %s: %v, want a deferral or a reject", client, bob, res.Rcpt[2])
				}
				if res.Data.Code != 250 {
					t.Fatalf("client %s: DATA %v", client, res.Data)
				}
				pf.WaitMessage(t, postmaster, res.MessageID)
			}
			for _, rcpt := range []string{postmaster, abuse} {
				for _, rec := range gm.WaitRecords(harness.DecisionFor(rcpt), 2) {
					if rec["action"] != "pass" || rec["reason"] != "rfc2142" {
						t.Errorf("decision %v, want action=pass reason=rfc2142", rec)
					}
				}
			}

			// The administrator's own blacklist still applies.
			res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "198.51.100.31", From: "someone@sender.example", To: []string{postmaster}})
			if len(res.Rcpt) != 1 || res.Rcpt[0].Code/100 != 5 {
				t.Errorf("blacklisted client to %s: %+v, want a 5xx", postmaster, res.Rcpt)
			}

			// Turned off, postmaster@ is judged like anyone: rejected for
			// the listing, greylisted when unlisted.
			_, pf = start("--no-postmaster-exemption")
			for client, want := range map[string]int{"203.0.113.1": 5, "203.0.113.4": 4} {
				res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: client, From: "someone@sender.example", To: []string{postmaster}})
				if len(res.Rcpt) != 1 || res.Rcpt[0].Code/100 != want {
					t.Errorf("--no-postmaster-exemption, client %s: %+v, want a %dxx", client, res.Rcpt, want)
				}
			}
		})
	}
}
