package dnsbl

import (
	"context"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/resolver"
)

// Prefetch starts, in the background, the lookups of addr in the zones
// whose answer is not cached, and returns at once. A Check of addr that
// follows finds their answers in the cache or joins them in flight: a
// caller that checks several lists (allow lists, then block lists) starts
// them all together, so that they share one wait.
func (l *List) Prefetch(ctx context.Context, addr netip.Addr) {
	if len(l.zones) == 0 {
		return
	}
	rev := resolver.Reverse(addr)
	for i := range l.zones {
		if l.state[i].suspended.Load() {
			continue // Check does not ask it either
		}
		name := rev + "." + l.zones[i].Name + "."
		if l.res.Has(name, dns.TypeA) {
			continue
		}
		go l.res.Lookup(ctx, name, dns.TypeA) //nolint:errcheck // Check reads the outcome
	}
}
