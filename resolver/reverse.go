package resolver

import (
	"net/netip"
	"strconv"
)

// Reverse returns the labels under which addr is looked up in a DNSBL or
// in the reverse tree, without a trailing dot: "4.3.2.1" for 1.2.3.4, and
// 32 nibbles for an IPv6 address (RFC 5782 section 2.4). An IPv4-mapped
// IPv6 address is reversed as the IPv4 address it stands for.
func Reverse(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is4() {
		a := addr.As4()
		b := make([]byte, 0, 15)
		for i := 3; i >= 0; i-- {
			b = strconv.AppendUint(b, uint64(a[i]), 10)
			if i > 0 {
				b = append(b, '.')
			}
		}
		return string(b)
	}
	const hex = "0123456789abcdef"
	a := addr.As16()
	b := make([]byte, 0, 63)
	for i := 15; i >= 0; i-- {
		b = append(b, hex[a[i]&0xf], '.', hex[a[i]>>4])
		if i > 0 {
			b = append(b, '.')
		}
	}
	return string(b)
}

// PTRName returns the fully qualified name of addr's PTR record.
func PTRName(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is4() {
		return Reverse(addr) + ".in-addr.arpa."
	}
	return Reverse(addr) + ".ip6.arpa."
}
