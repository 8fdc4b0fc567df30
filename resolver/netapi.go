package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// The methods of this file give the resolver the shape of *net.Resolver,
// so that it serves blitiri.com.ar/go/spf (its DNSResolver interface) and
// the reverse and forward DNS checks. Their errors are *net.DNSError, not
// wrapped, as those callers expect: IsNotFound for NXDOMAIN and NODATA,
// IsTimeout or IsTemporary for failures.

// LookupTXT returns the TXT records of name, the strings of each record
// joined as net.Resolver does.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.records(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupMX returns the MX records of name sorted by preference.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.records(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pref < out[j].Pref })
	return out, nil
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: a.AsSlice()}
	}
	return out, err
}

// LookupNetIP returns the addresses of host: network "ip4" asks for A
// records, "ip6" for AAAA, "ip" for both at once. An IP literal is
// returned as is. With "ip", one family failing while the other answers
// is not an error.
func (r *Resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	switch network {
	case "ip4":
		return r.lookupAddrs(ctx, host, dns.TypeA)
	case "ip6":
		return r.lookupAddrs(ctx, host, dns.TypeAAAA)
	case "ip":
	default:
		return nil, &net.DNSError{Err: "unknown network " + network, Name: host}
	}
	type result struct {
		addrs []netip.Addr
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		a, err := r.lookupAddrs(ctx, host, dns.TypeAAAA)
		ch <- result{a, err}
	}()
	v4, err4 := r.lookupAddrs(ctx, host, dns.TypeA)
	v6 := <-ch
	addrs := append(v4, v6.addrs...)
	if len(addrs) > 0 {
		return addrs, nil
	}
	// Both failed or found nothing: a failure says more than "not found".
	var derr *net.DNSError
	if errors.As(err4, &derr) && !derr.IsNotFound {
		return nil, err4
	}
	if v6.err != nil {
		return nil, v6.err
	}
	return nil, err4
}

func (r *Resolver) lookupAddrs(ctx context.Context, host string, qtype uint16) ([]netip.Addr, error) {
	rrs, err := r.records(ctx, host, qtype)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			if qtype == dns.TypeA {
				a = a.Unmap()
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// LookupAddr returns the names of addr's PTR records (fully qualified,
// with the trailing dot, as net.Resolver gives them).
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	return r.LookupPTR(ctx, a)
}

// LookupPTR returns the names of addr's PTR records.
func (r *Resolver) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	rrs, err := r.records(ctx, PTRName(addr), dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}

// records returns the records of qtype in the answer for name, or a
// *net.DNSError.
func (r *Resolver) records(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	a, err := r.Lookup(ctx, name, qtype)
	if err != nil {
		derr := &net.DNSError{Err: err.Error(), Name: name}
		if IsTimeout(err) {
			derr.IsTimeout = true
		}
		if !errors.Is(err, context.Canceled) {
			derr.IsTemporary = true
		}
		return nil, derr
	}
	var out []dns.RR
	for _, rr := range a.Records {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return out, nil
}
