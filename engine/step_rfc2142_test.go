package engine

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
)

// TestRFC2142Step checks that mail to postmaster@ and abuse@ passes before
// the DNS list and greylisting steps, and nothing else does.
func TestRFC2142Step(t *testing.T) {
	dnsblReject := stepFunc{"dnsbl", func(_ context.Context, d *Decision) (bool, error) {
		d.Verdict = Verdict{Action: Reject, Code: 554, ECode: "5.7.1", Text: "listed", Reason: "dnsbl"}
		return true, nil
	}}
	for _, c := range []struct {
		recipient string
		exempt    bool
	}{
		{"postmaster@here.example", true},
		{"abuse@here.example", true},
		{"PostMaster@Here.Example", true},
		{"ABUSE@sub.here.example", true},
		{"postmaster", true}, // RFC 5321's postmaster without a domain
		{"bob@here.example", false},
		{"postmaster+x@here.example", false},
		{"postmasters@here.example", false},
		{"abuse.desk@here.example", false},
		{"bob@postmaster.example", false},
		{"", false},
	} {
		var buf bytes.Buffer
		e := newTestEngine(&buf, Options{}, &RFC2142{}, dnsblReject, stepFunc{"greylist", deferStep})
		v := e.Decide(context.Background(), &Request{ClientAddr: netip.MustParseAddr("192.0.2.1"), Sender: "a@example.org", Recipient: c.recipient})
		if c.exempt {
			if v.Action != Pass || v.Reason != "rfc2142" || v.Step != "rfc2142" {
				t.Errorf("%q: %+v, want a pass by rfc2142", c.recipient, v)
			}
			if !strings.Contains(buf.String(), "reason=rfc2142") {
				t.Errorf("%q: log %q lacks reason=rfc2142", c.recipient, buf.String())
			}
			continue
		}
		if v.Action != Reject || v.Reason != "dnsbl" {
			t.Errorf("%q: %+v, want the DNSBL's reject", c.recipient, v)
		}
	}
}
