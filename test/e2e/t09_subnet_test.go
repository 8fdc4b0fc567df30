package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT09ClientSubnet: a triplet's client is the IPv4 /24 or the IPv6 /64,
// so that a retry from another address of the same network passes, while a
// client of another network starts over.
func TestT09ClientSubnet(t *testing.T) {
	t.Parallel()
	_, pf := system(t)
	tests := []struct {
		name                 string
		first, sibling, away string
	}{
		{"ipv4", "192.0.2.19", "192.0.2.219", "192.0.3.19"},
		{"ipv6", "2001:db8:19:1::1", "2001:db8:19:1:ffff::2", "2001:db8:19:2::1"},
	}
	send := func(client, rcpt string) harness.Reply {
		return harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: client, From: "alice@client.example", To: []string{rcpt}}).Rcpt[0]
	}
	wait := 0
	for _, tt := range tests {
		wait = max(wait, greylisted(t, tt.name+" first delivery from "+tt.first, send(tt.first, "t09-"+tt.name+"@"+harness.Domain)))
	}
	sleepFor(wait)
	for _, tt := range tests {
		rcpt := "t09-" + tt.name + "@" + harness.Domain
		greylisted(t, tt.name+" retry from another network "+tt.away, send(tt.away, rcpt))
		accepted(t, tt.name+" retry from the same network "+tt.sibling, send(tt.sibling, rcpt))
	}
}
