package lists

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// TestTableAgainstScan compares the flattened table with the obvious
// answer (scan every rule, keep the longest prefix, the first on a tie) over
// random nested and duplicate prefixes.
func TestTableAgainstScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v6 := range []bool{false, true} {
		for round := 0; round < 50; round++ {
			n := 1 + rng.IntN(60)
			prefixes := make([]netip.Prefix, n)
			var text strings.Builder
			for i := range prefixes {
				prefixes[i] = randPrefix(rng, v6)
				// Repeat an earlier rule now and then.
				if i > 0 && rng.IntN(8) == 0 {
					prefixes[i] = prefixes[rng.IntN(i)]
				}
				fmt.Fprintln(&text, prefixes[i])
			}
			l := mustParse(t, Clients, text.String())
			checkDisjoint(t, l.v4)
			checkDisjoint(t, l.v6)
			for q := 0; q < 300; q++ {
				var a netip.Addr
				if q%2 == 0 {
					// An address near a rule's edges.
					p := prefixes[rng.IntN(n)]
					a = p.Addr()
					if rng.IntN(2) == 0 {
						a = lastAddr(p)
					}
					switch rng.IntN(3) {
					case 0:
						if n := a.Next(); n.IsValid() {
							a = n
						}
					case 1:
						if p := a.Prev(); p.IsValid() {
							a = p
						}
					}
				} else {
					a = randPrefix(rng, v6).Addr()
				}
				wantLine := 0
				wantBits := -1
				for i, p := range prefixes {
					if p.Contains(a) && p.Bits() > wantBits {
						wantLine, wantBits = i+1, p.Bits()
					}
				}
				src, ok := l.MatchClient(a, "")
				if ok != (wantLine > 0) || ok && src.Line != wantLine {
					t.Fatalf("rules:\n%s\naddress %v: got %v %v, want line %d", text.String(), a, src, ok, wantLine)
				}
			}
		}
	}
}

// checkDisjoint checks that a table's ranges are sorted, disjoint and
// not empty, which its binary search relies on.
func checkDisjoint(t *testing.T, tb table) {
	t.Helper()
	for i := range tb.lo {
		if tb.hi[i].less(tb.lo[i]) || i > 0 && !tb.hi[i-1].less(tb.lo[i]) {
			t.Fatalf("table range %d (%v-%v) is empty or overlaps the one before", i, tb.lo[i], tb.hi[i])
		}
	}
}

// randPrefix returns a prefix inside a small space, so that random
// prefixes nest and touch often.
func randPrefix(rng *rand.Rand, v6 bool) netip.Prefix {
	if v6 {
		var b [16]byte
		b[0], b[1] = 0x20, 0x01
		b[2] = byte(rng.IntN(2))
		b[15] = byte(rng.IntN(256))
		bits := []int{0, 15, 16, 17, 120, 124, 127, 128}[rng.IntN(8)]
		return netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked()
	}
	b := [4]byte{10, byte(rng.IntN(2)), byte(rng.IntN(2)), byte(rng.IntN(256))}
	bits := []int{0, 8, 15, 16, 24, 26, 30, 31, 32}[rng.IntN(9)]
	return netip.PrefixFrom(netip.AddrFrom4(b), bits).Masked()
}

func lastAddr(p netip.Prefix) netip.Addr {
	_, hi := prefixSpan(p)
	if p.Addr().Is4() {
		return netip.AddrFrom4([4]byte{byte(hi.lo >> 24), byte(hi.lo >> 16), byte(hi.lo >> 8), byte(hi.lo)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(hi.hi >> (56 - 8*i))
		b[8+i] = byte(hi.lo >> (56 - 8*i))
	}
	return netip.AddrFrom16(b)
}

func TestRangePrefixes(t *testing.T) {
	cases := []struct {
		lo, hi string
		want   string
	}{
		{"10.0.0.0", "10.0.0.9", "10.0.0.0/29 10.0.0.8/31"},
		{"10.0.0.10", "10.0.0.19", "10.0.0.10/31 10.0.0.12/30 10.0.0.16/30"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"255.255.255.255", "255.255.255.255", "255.255.255.255/32"},
		{"192.168.0.0", "192.168.255.255", "192.168.0.0/16"},
	}
	for _, c := range cases {
		lo := addrKey(netip.MustParseAddr(c.lo))
		hi := addrKey(netip.MustParseAddr(c.hi))
		var got []string
		for _, p := range rangePrefixes(nil, uint32(lo.lo), uint32(hi.lo)) {
			got = append(got, p.String())
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%s-%s: %s, want %s", c.lo, c.hi, g, c.want)
		}
	}
}
