package checks

import (
	"net/netip"
	"testing"
)

// The heuristics run for every unknown triplet in mode suspicious; without
// DNS (the MTA gave a name) they must cost next to nothing.
func BenchmarkRun(b *testing.B) {
	c := NewChecker(DefaultScores, nil, nil)
	in := Input{Addr: netip.MustParseAddr("203.0.113.50"), Name: "dsl-203-0-113-50.dyn.isp.example.net",
		Helo: "desktop-7f3k", Sender: "a@example.org", Recipient: "b@example.net"}
	for b.Loop() {
		c.Run(b.Context(), in)
	}
}

func BenchmarkMatchClean(b *testing.B) {
	p := DefaultPatterns()
	addr := netip.MustParseAddr("192.0.2.34")
	for b.Loop() {
		p.Match("www.shop.example.co.uk", addr)
	}
}
