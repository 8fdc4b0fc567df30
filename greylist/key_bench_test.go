package greylist_test

import (
	"net/netip"
	"testing"

	"github.com/greymilter/greymilter/greylist"
)

// BenchmarkKey measures building a triplet key (subnet grouping, sender
// folding, recipient lowercasing), which every decision does at least once.
func BenchmarkKey(b *testing.B) {
	cases := []struct {
		name, client, sender, rcpt string
	}{
		{"plain-ipv4", "192.0.2.57", "alice@example.com", "bob@example.org"},
		{"plain-ipv6", "2001:db8:1:2:3:4:5:6", "alice@example.com", "bob@example.org"},
		{"mixed-case", "192.0.2.57", "Alice.Smith@Example.COM", "Bob@Example.ORG"},
		{"batv", "192.0.2.57", "prvs=0123456789=alice@example.com", "bob@example.org"},
		{"srs", "192.0.2.57", "SRS0=HHH=TT=example.com=alice@forwarder.example", "bob@example.org"},
		{"verp", "192.0.2.57", "list-bounces-12345-bob=example.org@lists.example", "bob@example.org"},
		{"null-sender", "192.0.2.57", "", "bob@example.org"},
	}
	for _, c := range cases {
		addr := netip.MustParseAddr(c.client)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				greylist.DefaultKeyer.Key(addr, c.sender, c.rcpt)
			}
		})
	}
}
