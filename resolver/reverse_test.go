package resolver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func TestReverse(t *testing.T) {
	tests := []struct{ addr, rev, ptr string }{
		{"192.0.2.1", "1.2.0.192", "1.2.0.192.in-addr.arpa."},
		{"127.0.0.2", "2.0.0.127", "2.0.0.127.in-addr.arpa."},
		{"::ffff:10.1.2.3", "3.2.1.10", "3.2.1.10.in-addr.arpa."},
		{"2001:db8::1",
			"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
			"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."},
		{"fe80::abcd:ef01", // RFC 5782's example style: every nibble, zeros included
			"1.0.f.e.d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f",
			"1.0.f.e.d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa."},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := Reverse(a); got != tt.rev {
			t.Errorf("Reverse(%s) = %s, want %s", tt.addr, got, tt.rev)
		}
		if got := PTRName(a); got != tt.ptr {
			t.Errorf("PTRName(%s) = %s, want %s", tt.addr, got, tt.ptr)
		}
		// miekg/dns agrees.
		if want, _ := dns.ReverseAddr(a.Unmap().String()); want != tt.ptr {
			t.Errorf("dns.ReverseAddr(%s) = %s", tt.addr, want)
		}
	}
}
