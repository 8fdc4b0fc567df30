package checks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/greymilter/greymilter/internal/lazyctx"
)

// Resolver is the DNS interface of the checks. It is the shape of
// *net.Resolver and of blitiri.com.ar/go/spf's DNSResolver, which the
// project's caching resolver (resolver.Resolver) has.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// DefaultSPFTimeout bounds one SPF evaluation unless SPF.Timeout says
// otherwise: greymilter's default DNS budget of a decision (--dns-timeout),
// which SPF shares with the other lookups and never exceeds.
const DefaultSPFTimeout = 2 * time.Second

// SPF evaluates the SPF policy (RFC 7208) of the domain a sender claims.
type SPF struct {
	Resolver Resolver      // required
	Timeout  time.Duration // bounds one evaluation; DefaultSPFTimeout when 0
}

// SPFResult is the outcome of an SPF evaluation.
type SPFResult struct {
	Result spf.Result
	// Domain is the domain evaluated: the sender's, or the HELO name for
	// the null sender; "" when there was none to evaluate.
	Domain string
	// Permissive says that the domain's policy passes any address (+all
	// and the like), so its pass proves nothing.
	Permissive bool
	// Err tells why a result is temperror or permerror.
	Err error
}

// Effective is the result as evidence: a permissive pass is neutral, as
// RFC 7208 calls a policy that asserts nothing about the client.
func (r SPFResult) Effective() spf.Result {
	if r.Result == spf.Pass && r.Permissive {
		return spf.Neutral
	}
	return r.Result
}

// Probe addresses that no real policy authorises (reserved IPv4 240/4,
// the IPv6 discard prefix of RFC 6666); a policy that passes them passes
// anyone.
var (
	probe4 = net.IP(netip.MustParseAddr("240.0.0.1").AsSlice())
	probe6 = net.IP(netip.MustParseAddr("100::1").AsSlice())
)

// Check evaluates the SPF policy of sender's domain for a client at addr
// that said HELO helo. For the null sender the HELO name is evaluated, as
// RFC 7208 section 2.4 says. The evaluation abstains (temperror) when ctx
// or s.Timeout runs out.
func (s *SPF) Check(ctx context.Context, addr netip.Addr, helo, sender string) SPFResult {
	helo = normalizeName(helo)
	var domain string
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		domain = normalizeName(sender[i+1:])
	} else {
		// The null sender; RFC 7208 makes it postmaster@HELO.
		domain = helo
		sender = "postmaster@" + helo
	}
	if !isDomainName(domain) {
		return SPFResult{Result: spf.None}
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultSPFTimeout
	}
	ctx, cancel := lazyctx.WithTimeout(ctx, timeout)
	defer cancel()
	opts := []spf.Option{spf.WithContext(ctx), spf.WithResolver(s.Resolver)}
	ip := addr.Unmap()
	res, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), helo, sender, opts...)
	out := SPFResult{Result: res, Domain: domain}
	if ctx.Err() != nil {
		// Lookups cut short by the deadline or the caller can end in any
		// result (permerror for a cancelled one); none of them counts.
		out.Result, err = spf.TempError, fmt.Errorf("checks: spf: %w (%v)", ctx.Err(), err)
	}
	if out.Result == spf.TempError || out.Result == spf.PermError {
		out.Err = err
	}
	if out.Result == spf.Pass {
		probe := probe4
		if ip.Is6() {
			probe = probe6
		}
		if p, _ := spf.CheckHostWithSender(probe, helo, sender, opts...); p == spf.Pass {
			out.Permissive = true
		}
	}
	return out
}

// isDomainName reports whether s can be a domain with an SPF policy: at
// least two labels, not an address.
func isDomainName(s string) bool {
	if !strings.Contains(s, ".") || strings.HasPrefix(s, "[") || isAddress(s) {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
	}
	return len(s) <= 253
}

// SPFScore scores an SPF result given as its name ("pass", "fail", ...):
// fail and softfail add to the score, pass lowers it, the rest abstain.
func SPFScore(result string, s Scores) Result {
	r := Result{Check: "spf", Reason: result}
	switch spf.Result(result) {
	case spf.Fail:
		r.Score = s.SPFFail
	case spf.SoftFail:
		r.Score = s.SPFSoftFail
	case spf.Pass:
		r.Score = s.SPFPass
	case "":
		r.Reason = "not-checked"
	}
	return r
}
