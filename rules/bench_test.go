package rules

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// BenchmarkMatch walks 50 lines to the catch-all: the worst case of a
// decision's rules step short of a DNS lookup.
func BenchmarkMatch(b *testing.B) {
	var text strings.Builder
	for i := range 50 {
		fmt.Fprintf(&text, "client 10.%d.0.0/16 sender @partner%d.example => delay 1m\nrecipient @customer%d.example => mode always\n", i, i, i)
	}
	text.WriteString("=> mode never\n")
	rs, err := Parse("rules", strings.NewReader(text.String()), Options{})
	if err != nil {
		b.Fatal(err)
	}
	s := &Set{rules: rs}
	in := &Input{Addr: netip.MustParseAddr("192.0.2.1"), Name: "mail.example.org", Helo: "mail.example.org", Sender: "a@example.org", Recipient: "b@example.net"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := s.Match(ctx, in); r == nil || r.Mode != ModeNever {
			b.Fatal(r)
		}
	}
}
