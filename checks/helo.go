package checks

import (
	"net/netip"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// HELO scores the HELO name against the client's verified name: equal is
// 0; the same registrable domain ("mx1.example.org" from
// "out7.example.org"), or an address literal that is the client's address,
// is Scores.HeloSameDomain; anything else is Scores.HeloMismatch.
//
// Real mail servers greet with their own name, or at least one of their
// organisation's; bots greet with whatever they were given.
func HELO(in Input, s Scores) Result {
	helo := normalizeName(in.Helo)
	name := normalizeName(in.Name)
	r := Result{Check: "helo", Score: s.HeloMismatch}
	switch {
	case helo == "":
		r.Reason = "empty"
	case strings.HasPrefix(helo, "["):
		if a, ok := addressLiteral(helo); ok && a == in.Addr.Unmap() {
			r.Score, r.Reason = s.HeloSameDomain, "literal"
		} else {
			r.Reason = "foreign-literal"
		}
	case isAddress(helo):
		// RFC 5321 wants brackets; servers that know better use them.
		r.Reason = "bare-address"
	case name == "":
		r.Reason = "no-client-name"
	case helo == name:
		r.Score, r.Reason = 0, "equal"
	case sameRegistrableDomain(helo, name):
		r.Score, r.Reason = s.HeloSameDomain, "same-domain"
	default:
		r.Reason = "mismatch"
	}
	return r
}

// normalizeName lowercases a host name and drops its trailing dot.
func normalizeName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// addressLiteral parses an RFC 5321 address literal: "[192.0.2.1]" or
// "[ipv6:2001:db8::1]" (lowercased). The IPv6 tag is not insisted on.
func addressLiteral(s string) (netip.Addr, bool) {
	inner, ok := strings.CutPrefix(s, "[")
	if !ok {
		return netip.Addr{}, false
	}
	if inner, ok = strings.CutSuffix(inner, "]"); !ok {
		return netip.Addr{}, false
	}
	v6, tagged := strings.CutPrefix(inner, "ipv6:")
	if tagged {
		inner = v6
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || a.Zone() != "" || (tagged && !a.Is6()) {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func isAddress(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// sameRegistrableDomain reports whether a and b are under the same domain
// that one party registered ("example.co.uk", not "co.uk").
func sameRegistrableDomain(a, b string) bool {
	da, err := publicsuffix.EffectiveTLDPlusOne(a)
	if err != nil {
		return false
	}
	db, err := publicsuffix.EffectiveTLDPlusOne(b)
	return err == nil && da == db
}
