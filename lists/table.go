package lists

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
)

// u128 is an address as a 128-bit number; IPv4 addresses use only the low
// 32 bits and live in a table of their own.
type u128 struct{ hi, lo uint64 }

var maxU128 = u128{^uint64(0), ^uint64(0)}

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) inc() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func (a u128) dec() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

// addrKey turns an address into its number. a must be unmapped.
func addrKey(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// prefixSpan returns the first and last address of p, which must be masked
// and unmapped.
func prefixSpan(p netip.Prefix) (lo, hi u128) {
	lo = addrKey(p.Addr())
	host := uint(p.Addr().BitLen() - p.Bits())
	var mask u128
	if host >= 64 {
		// A shift by 64 gives 0 in Go, so 0-1 is all ones: right for /0.
		mask = u128{uint64(1)<<(host-64) - 1, ^uint64(0)}
	} else {
		mask = u128{0, uint64(1)<<host - 1}
	}
	return lo, u128{lo.hi | mask.hi, lo.lo | mask.lo}
}

// span is a range of addresses and the rule (index into List.sources) that
// owns it.
type span struct {
	lo, hi u128
	src    int32
}

// table answers which rule covers an address. It holds disjoint ranges
// sorted by their first address, so a lookup is one binary search whatever
// the number of rules. The first addresses sit in a slice of their own to
// keep the search within few cache lines.
type table struct {
	lo  []u128
	hi  []u128
	src []int32
}

func (t *table) lookup(x u128) (int32, bool) {
	// Find the first range starting after x; the one before it is the only
	// one that can hold x.
	i, j := 0, len(t.lo)
	for i < j {
		h := int(uint(i+j) >> 1)
		if x.less(t.lo[h]) {
			j = h
		} else {
			i = h + 1
		}
	}
	if i == 0 || t.hi[i-1].less(x) {
		return 0, false
	}
	return t.src[i-1], true
}

// buildTable flattens prefixes into a table of disjoint ranges. CIDR
// prefixes are always either nested or disjoint; where they nest the most
// specific one owns the addresses it covers (so a log names the /32 rule,
// not the /8 around it), and of identical prefixes the earliest rule wins.
// spans must all be prefixes of one address family.
func buildTable(spans []span) table {
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		case b.hi.less(a.hi): // wider first, so it encloses the narrower
			return -1
		case a.hi.less(b.hi):
			return 1
		}
		return int(a.src - b.src)
	})
	var (
		t     table
		stack []span
		cur   u128 // first address not yet emitted inside the stack's top
		done  bool // cur went past the last address: nothing more to emit
	)
	emit := func(lo, hi u128, src int32) {
		if done || hi.less(lo) {
			return
		}
		if n := len(t.lo) - 1; n >= 0 && t.src[n] == src && t.hi[n].inc() == lo {
			t.hi[n] = hi
			return
		}
		t.lo, t.hi, t.src = append(t.lo, lo), append(t.hi, hi), append(t.src, src)
	}
	pop := func() {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		emit(cur, top.hi, top.src)
		if top.hi == maxU128 {
			done = true
		}
		cur = top.hi.inc()
	}
	for _, s := range spans {
		for len(stack) > 0 && stack[len(stack)-1].hi.less(s.lo) {
			pop()
		}
		if n := len(stack); n > 0 {
			top := stack[n-1]
			if top.lo == s.lo && top.hi == s.hi {
				continue // the same prefix again: the earlier rule keeps it
			}
			if cur.less(s.lo) {
				emit(cur, s.lo.dec(), top.src)
			}
		}
		stack = append(stack, s)
		cur = s.lo
	}
	for len(stack) > 0 {
		pop()
	}
	return t
}

// rangePrefixes appends the fewest IPv4 prefixes that exactly cover the
// addresses lo..hi.
func rangePrefixes(dst []netip.Prefix, lo, hi uint32) []netip.Prefix {
	for a := uint64(lo); a <= uint64(hi); {
		// The largest block that starts at a and ends by hi.
		size := bits.TrailingZeros64(a | 1<<32)
		for a+(1<<size)-1 > uint64(hi) {
			size--
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(a))
		dst = append(dst, netip.PrefixFrom(netip.AddrFrom4(b), 32-size))
		a += 1 << size
	}
	return dst
}
