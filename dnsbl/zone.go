package dnsbl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// loopback8 is where every meaningful DNSBL answer lies (RFC 5782 section
// 2.1); anything else comes from a lying resolver or a dead zone.
var loopback8 = netip.MustParsePrefix("127.0.0.0/8")

// IsRefusal tells whether a DNS list's answer means "query refused" rather
// than a listing, in a block list as in an allow list: 127.255.255.252-255
// (Spamhaus: typing error, open or public resolver, too many queries),
// 127.0.0.255 (dnswl.org: blocked, e.g. a public resolver or over the free
// query limit) and 127.0.0.1, which URIBL and SURBL answer to refused
// queries and which RFC 5782 says no list may list.
func IsRefusal(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	b := a.As4()
	return b == [4]byte{127, 0, 0, 1} || b == [4]byte{127, 0, 0, 255} ||
		(b[0] == 127 && b[1] == 255 && b[2] == 255 && b[3] >= 252)
}

// Zone is one DNS list and what its answers mean to us.
type Zone struct {
	// Name is the zone queried, without the trailing dot.
	Name string
	// Accept limits the answers that count as a listing; empty accepts
	// every answer in 127.0.0.0/8 that is not a refusal.
	Accept []AddrRange
	// Code, ECode and Text, when set, replace the step's reply for
	// clients this zone lists.
	Code  int
	ECode string
	Text  string
	// Score, when not 0, is what a listing here adds to the suspicion
	// score under --dnsbl-action score, instead of --score-dnsbl.
	Score int
}

// AddrRange is an inclusive range of addresses.
type AddrRange struct{ From, To netip.Addr }

// Contains tells whether a is in the range.
func (r AddrRange) Contains(a netip.Addr) bool {
	return r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

func (r AddrRange) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// Counts tells whether answer a from this zone is a listing.
func (z *Zone) Counts(a netip.Addr) bool {
	a = a.Unmap()
	if !loopback8.Contains(a) || IsRefusal(a) {
		return false
	}
	if len(z.Accept) == 0 {
		return true
	}
	for _, r := range z.Accept {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// ParseZone parses the argument of --addbl and --addwl: "ZONE" or
// "ZONE=FILTER[,FILTER...]", where a filter is an address (127.0.0.2), an
// inclusive range (127.0.0.2-127.0.0.11) or a prefix (127.0.0.8/29); either
// may end in ":score=N", the zone's Score.
func ParseZone(spec string) (Zone, error) {
	spec, score, hasScore := strings.Cut(strings.TrimSpace(spec), ":score=")
	z, err := parseZone(spec)
	if err != nil || !hasScore {
		return z, err
	}
	if z.Score, err = strconv.Atoi(score); err != nil || z.Score == 0 {
		return Zone{}, fmt.Errorf("dnsbl: zone %q: score %q: want a whole number other than 0", spec, score)
	}
	return z, nil
}

func parseZone(spec string) (Zone, error) {
	name, filters, hasFilter := strings.Cut(strings.TrimSpace(spec), "=")
	name = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if name == "" {
		return Zone{}, fmt.Errorf("dnsbl: zone %q: empty name", spec)
	}
	if !isHostname(name) {
		return Zone{}, fmt.Errorf("dnsbl: zone %q: not a domain name", spec)
	}
	z := Zone{Name: name}
	if !hasFilter {
		return z, nil
	}
	for f := range strings.SplitSeq(filters, ",") {
		r, err := parseRange(strings.TrimSpace(f))
		if err != nil {
			return Zone{}, fmt.Errorf("dnsbl: zone %q: %w", spec, err)
		}
		z.Accept = append(z.Accept, r)
	}
	return z, nil
}

// isHostname accepts dot-separated labels of letters, digits, '-' and '_'.
func isHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func parseRange(s string) (AddrRange, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return AddrRange{}, err
		}
		p = p.Masked()
		return AddrRange{From: p.Addr(), To: lastAddr(p)}, nil
	}
	from, to, isRange := strings.Cut(s, "-")
	a, err := netip.ParseAddr(strings.TrimSpace(from))
	if err != nil {
		return AddrRange{}, err
	}
	b := a
	if isRange {
		if b, err = netip.ParseAddr(strings.TrimSpace(to)); err != nil {
			return AddrRange{}, err
		}
		if b.Less(a) || a.Is4() != b.Is4() {
			return AddrRange{}, fmt.Errorf("bad range %q", s)
		}
	}
	return AddrRange{From: a, To: b}, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ParseReply parses a per-zone reply, "ZONE=[CODE [ECODE]] TEXT" (e.g.
// "zen.example=554 5.7.1 Listed by zen, see https://..."), and sets it on
// the zone of that name among zones.
func ParseReply(spec string, zones []Zone) error {
	name, reply, ok := strings.Cut(spec, "=")
	if !ok {
		return fmt.Errorf("dnsbl: reply %q: want ZONE=[CODE [ECODE]] TEXT", spec)
	}
	name = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	var z *Zone
	for i := range zones {
		if zones[i].Name == name {
			z = &zones[i]
		}
	}
	if z == nil {
		return fmt.Errorf("dnsbl: reply %q: no such zone", spec)
	}
	fields := strings.Fields(reply)
	if len(fields) > 0 && len(fields[0]) == 3 {
		if c, err := strconv.Atoi(fields[0]); err == nil && c >= 400 && c < 600 {
			z.Code, fields = c, fields[1:]
			if len(fields) > 0 && isEnhancedCode(fields[0], c) {
				z.ECode, fields = fields[0], fields[1:]
			}
		}
	}
	z.Text = strings.Join(fields, " ")
	return nil
}

// isEnhancedCode accepts "X.Y.Z" whose class matches the reply code's
// (RFC 3463).
func isEnhancedCode(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}
