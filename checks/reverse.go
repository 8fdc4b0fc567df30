package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Reverse scores a client without a verified reverse name
// Scores.NoReverse. Postfix calls such a client "unknown"; most mail
// servers have a name that resolves back to their address, most bots do
// not.
func Reverse(in Input, s Scores) Result {
	if normalizeName(in.Name) == "" {
		return Result{Check: "rdns", Score: s.NoReverse, Reason: "unknown"}
	}
	return Result{Check: "rdns", Reason: "verified"}
}

// ReverseLookup is what a reverse lookup of an address found.
type ReverseLookup struct {
	PTR      string // the first PTR name, "" when there is none
	Verified string // a PTR name that resolves back to the address, "" when none does
}

// maxPTRNames bounds the forward lookups one reverse lookup costs: an
// address with many PTR records is not a mail server's.
const maxPTRNames = 4

// LookupReverse finds addr's reverse name the way an MTA does: its PTR
// names, and the first of them whose A or AAAA records hold addr
// (forward-confirmed reverse DNS). "Not found" is not an error; a failed
// lookup is, and then the result holds what was found before it.
func LookupReverse(ctx context.Context, r Resolver, addr netip.Addr) (ReverseLookup, error) {
	addr = addr.Unmap()
	names, err := r.LookupAddr(ctx, addr.String())
	if err != nil {
		if isNotFound(err) {
			return ReverseLookup{}, nil
		}
		return ReverseLookup{}, fmt.Errorf("checks: reverse lookup of %s: %w", addr, err)
	}
	if len(names) == 0 {
		return ReverseLookup{}, nil
	}
	found := ReverseLookup{PTR: normalizeName(names[0])}
	var errs []error
	for _, name := range names[:min(len(names), maxPTRNames)] {
		ips, err := r.LookupIPAddr(ctx, name)
		if err != nil {
			if !isNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip.IP); ok && a.Unmap() == addr {
				found.Verified = normalizeName(name)
				return found, nil
			}
		}
	}
	if len(errs) > 0 {
		return found, fmt.Errorf("checks: forward lookup of %s's names: %w", addr, errors.Join(errs...))
	}
	return found, nil
}

func isNotFound(err error) bool {
	var derr *net.DNSError
	return errors.As(err, &derr) && derr.IsNotFound
}
