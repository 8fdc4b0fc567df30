package lists

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

var benchSizes = []int{10, 1000, 100000}

// benchList builds a client list of n random networks and hosts, a tenth of
// them IPv6, and addresses to look up of which about half are listed.
func benchList(b *testing.B, n int) (*List, []netip.Addr) {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	var text strings.Builder
	var listed []netip.Addr
	for i := 0; i < n; i++ {
		if i%10 == 9 {
			var a [16]byte
			a[0], a[1] = 0x20, 0x01
			for j := 2; j < 16; j++ {
				a[j] = byte(rng.Uint32())
			}
			p := netip.PrefixFrom(netip.AddrFrom16(a), 48+rng.IntN(81))
			fmt.Fprintln(&text, p)
			listed = append(listed, p.Addr())
			continue
		}
		a := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		p := netip.PrefixFrom(a, 20+rng.IntN(13))
		fmt.Fprintln(&text, p)
		listed = append(listed, a)
	}
	l, err := Parse(Clients, "bench", strings.NewReader(text.String()))
	if err != nil {
		b.Fatal(err)
	}
	queries := make([]netip.Addr, 1024)
	for i := range queries {
		if i%2 == 0 {
			queries[i] = listed[rng.IntN(len(listed))]
		} else {
			queries[i] = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		}
	}
	return l, queries
}

// BenchmarkMatchClientAddr is the cost of one address lookup; it must stay
// flat (and well under a microsecond) from 10 to 100,000 rules.
func BenchmarkMatchClientAddr(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			l, queries := benchList(b, n)
			b.ReportAllocs()
			hits := 0
			for i := 0; b.Loop(); i++ {
				if _, ok := l.MatchClient(queries[i%len(queries)], ""); ok {
					hits++
				}
			}
			if hits == 0 {
				b.Fatal("no lookup matched")
			}
		})
	}
}

// BenchmarkMatchClientName is the cost of matching a client name against n
// name rules.
func BenchmarkMatchClientName(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var text strings.Builder
			for i := 0; i < n; i++ {
				fmt.Fprintf(&text, "mx%d.provider%d.example\n", i, i%97)
			}
			l, err := Parse(Clients, "bench", strings.NewReader(text.String()))
			if err != nil {
				b.Fatal(err)
			}
			names := []string{"a.b.mx3.provider3.example", "mail-wr1-f41.google.com", "unlisted.example.org"}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				l.MatchClient(netip.Addr{}, names[i%len(names)])
			}
		})
	}
}

// BenchmarkMatchAddress is the cost of matching a recipient against n
// address and domain rules.
func BenchmarkMatchAddress(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var text strings.Builder
			for i := 0; i < n; i++ {
				switch i % 3 {
				case 0:
					fmt.Fprintf(&text, "user%d@example%d.com\n", i, i%13)
				case 1:
					fmt.Fprintf(&text, "dept%d.example.org\n", i)
				default:
					fmt.Fprintf(&text, "role%d@\n", i)
				}
			}
			l, err := Parse(Addresses, "bench", strings.NewReader(text.String()))
			if err != nil {
				b.Fatal(err)
			}
			addrs := []string{"user0+tag@example0.com", "someone@a.dept1.example.org", "nobody@unlisted.example.net"}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				l.MatchAddress(addrs[i%len(addrs)])
			}
		})
	}
}

// BenchmarkParseNetworks is the cost of reading and compiling a file of
// 100,000 networks, which a reload pays once.
func BenchmarkParseNetworks(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	var text strings.Builder
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&text, "%d.%d.%d.%d/%d\n", 1+rng.IntN(223), rng.IntN(256), rng.IntN(256), rng.IntN(256), 20+rng.IntN(13))
	}
	s := text.String()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(Clients, "bench", strings.NewReader(s)); err != nil {
			b.Fatal(err)
		}
	}
}
