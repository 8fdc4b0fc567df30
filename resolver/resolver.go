// Package resolver is the caching stub resolver that every DNS check of
// greymilter shares (DNS lists, SPF and reverse lookups).
//
// It asks recursive upstream servers (from the configuration or
// /etc/resolv.conf) round-robin, fails over to the next one on a timeout or
// an error answer, retries over TCP when an answer is truncated, caches
// answers for their TTL (negative ones for the SOA minimum, RFC 2308) in a
// bounded LRU cache, remembers failures for a short while (FailureTTL), and
// merges concurrent identical queries into one packet. Every lookup is
// bounded by the caller's context and by the resolver's own timeout, and a
// circuit breaker per server stops asking one that keeps timing out (one
// probe every ProbeEvery tells when it is back), so a dead DNS server
// never stalls the MTA: lookups to it fail at once.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults of Config.
const (
	DefaultTimeout   = 2 * time.Second
	DefaultMaxTTL    = time.Hour
	DefaultCacheSize = 10000
)

// FailureTTL is how long a lookup that failed (timeout, SERVFAIL, a
// malformed answer) is remembered: the same name and type fail again at
// once instead of costing another wait.
const FailureTTL = 30 * time.Second

// ErrUpstreamDown is the error of a lookup not sent because every upstream
// server is marked down by its circuit breaker (see BreakAfter).
var ErrUpstreamDown = errors.New("every DNS server is down")

// ErrServerFailure is the error of a lookup that every upstream server
// answered with something other than NOERROR or NXDOMAIN (SERVFAIL,
// REFUSED, ...).
var ErrServerFailure = errors.New("server failure")

// Clock tells the time for cache expiry; tests give a fake one.
// engine.Clock satisfies it.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Config configures a Resolver. The zero value asks the servers of
// /etc/resolv.conf with the defaults above.
type Config struct {
	// Servers are the upstream recursive servers, "HOST:PORT". Empty: the
	// nameservers of ResolvConf.
	Servers []string
	// ResolvConf is read when Servers is empty; default /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds every lookup, failover included; default 2s.
	Timeout time.Duration
	// MinTTL and MaxTTL cap the time an answer stays cached, positive
	// or negative. MaxTTL defaults to one hour.
	MinTTL, MaxTTL time.Duration
	// CacheSize is the number of answers kept; default 10000, negative
	// disables the cache.
	CacheSize int
	Clock     Clock        // default: the wall clock
	Logger    *slog.Logger // default: slog.Default()
}

// Resolver is a caching DNS stub resolver, safe for concurrent use.
type Resolver struct {
	servers        []*upstream
	next           atomic.Uint32 // round-robin position
	timeout        time.Duration
	minTTL, maxTTL time.Duration
	cache          *cache // nil when disabled
	flights        flightGroup
	clock          Clock
	log            *slog.Logger
	stats          struct{ lookups, hits, queries atomic.Int64 }
}

// New returns a resolver configured by cfg.
func New(cfg Config) (*Resolver, error) {
	servers := cfg.Servers
	if len(servers) == 0 {
		path := cfg.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		var err error
		if servers, err = ReadResolvConf(path); err != nil {
			return nil, err
		}
	}
	r := &Resolver{
		timeout: cfg.Timeout,
		minTTL:  cfg.MinTTL,
		maxTTL:  cfg.MaxTTL,
		clock:   cfg.Clock,
		log:     cfg.Logger,
	}
	for _, s := range servers {
		addr, err := normalizeServer(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, &upstream{addr: addr})
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.maxTTL <= 0 {
		r.maxTTL = DefaultMaxTTL
	}
	if r.minTTL > r.maxTTL {
		return nil, fmt.Errorf("dnsbl: minimum TTL %v above maximum %v", r.minTTL, r.maxTTL)
	}
	switch size := cfg.CacheSize; {
	case size == 0:
		r.cache = newCache(DefaultCacheSize)
	case size > 0:
		r.cache = newCache(size)
	}
	if r.clock == nil {
		r.clock = systemClock{}
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r, nil
}

// Servers returns the upstream servers in configuration order.
func (r *Resolver) Servers() []string {
	out := make([]string, len(r.servers))
	for i, s := range r.servers {
		out[i] = s.addr
	}
	return out
}

// Timeout is the bound of one lookup.
func (r *Resolver) Timeout() time.Duration { return r.timeout }

// Stats are the resolver's counters since it started.
type Stats struct {
	Lookups   int64 // calls to Lookup
	CacheHits int64 // lookups answered from the cache
	Queries   int64 // queries sent upstream, retries included
	Cached    int   // answers in the cache now
}

// Stats returns the resolver's counters.
func (r *Resolver) Stats() Stats {
	s := Stats{Lookups: r.stats.lookups.Load(), CacheHits: r.stats.hits.Load(), Queries: r.stats.queries.Load()}
	if r.cache != nil {
		s.Cached = r.cache.len()
	}
	return s
}

// Answer is the outcome of a lookup: NOERROR (possibly with no records of
// the asked type: NODATA) or NXDOMAIN. It may be shared with other callers
// through the cache: treat it and its records as read-only.
type Answer struct {
	Rcode   int      // dns.RcodeSuccess or dns.RcodeNameError
	Records []dns.RR // the answer section, CNAMEs included
}

// Lookup asks for the records of qtype (e.g. dns.TypeA) at name, from the
// cache when it can. It returns an error only when no answer came: timeout,
// cancellation, every server failing (ErrServerFailure), every server
// marked down (ErrUpstreamDown), or such a failure of the same name
// remembered from a moment ago (see FailureTTL).
//
// Concurrent lookups of the same name and type share one upstream query,
// which is given the resolver's timeout (or the first caller's deadline
// when that is sooner), and is abandoned when every caller gave up.
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	k := cacheKey{name: strings.ToLower(dns.Fqdn(name)), qtype: qtype}
	if o, ok := r.cached(k); ok {
		if o.err != nil {
			return nil, fmt.Errorf("dnsbl: lookup %s %s: %w (failed moments ago; not asked again yet)", k.name, dns.TypeToString[qtype], o.err)
		}
		return o.answer, nil
	}
	budget := r.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < budget {
		budget = time.Until(dl)
	}
	a, err := r.flights.do(ctx, k, budget, func(fctx context.Context) (*Answer, error) {
		m, err := r.exchange(fctx, k)
		if err != nil {
			if r.worthRemembering(err, budget) {
				r.storeFailure(k, err)
			}
			return nil, err
		}
		a := &Answer{Rcode: m.Rcode, Records: m.Answer}
		r.store(k, a, m)
		return a, nil
	})
	if err != nil {
		return nil, fmt.Errorf("dnsbl: lookup %s %s: %w", k.name, dns.TypeToString[qtype], err)
	}
	return a, nil
}

// Cached answers a lookup from the cache alone: ok is false when the
// answer would have to be asked for, or when the name failed a moment ago
// (Lookup says how).
func (r *Resolver) Cached(name string, qtype uint16) (a *Answer, ok bool) {
	o, ok := r.cached(cacheKey{name: strings.ToLower(dns.Fqdn(name)), qtype: qtype})
	if !ok || o.err != nil {
		r.stats.lookups.Add(-1) // Lookup counts it when it asks
		if ok {
			r.stats.hits.Add(-1)
		}
		return nil, false
	}
	return o.answer, true
}

// cached counts a lookup and answers it from the cache if it can.
func (r *Resolver) cached(k cacheKey) (outcome, bool) {
	r.stats.lookups.Add(1)
	if r.cache == nil {
		return outcome{}, false
	}
	o, ok := r.cache.get(k, r.clock.Now())
	if ok {
		r.stats.hits.Add(1)
	}
	return o, ok
}

// worthRemembering tells the failures that say something about the name
// from those that say nothing: an error answer (SERVFAIL, REFUSED, a
// malformed packet) always does, a timeout only when the query had at
// least half the resolver's timeout (a lookup started near the end of a
// decision's budget proves nothing), and a query abandoned by its callers
// or not sent because every upstream is down never does.
func (r *Resolver) worthRemembering(err error, budget time.Duration) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, ErrUpstreamDown):
		return false
	case IsTimeout(err):
		return budget >= r.timeout/2
	}
	return true
}

// storeFailure remembers a failed lookup for FailureTTL (at most MaxTTL),
// so that a name whose servers are dead or broken costs the decisions of
// the next moments nothing: RFC 2308 section 7 allows up to five minutes.
func (r *Resolver) storeFailure(k cacheKey, err error) {
	if r.cache == nil {
		return
	}
	r.cache.put(k, outcome{err: err}, r.clock.Now().Add(min(FailureTTL, r.maxTTL)))
}

// store caches a for its TTL: the smallest TTL of the answer records, or
// for a negative answer the SOA minimum capped by the SOA's own TTL (RFC
// 2308 section 5). Negative answers without a SOA are not cached.
func (r *Resolver) store(k cacheKey, a *Answer, m *dns.Msg) {
	if r.cache == nil {
		return
	}
	ttl, ok := answerTTL(m, k.qtype)
	if !ok {
		return
	}
	d := max(time.Duration(ttl)*time.Second, r.minTTL)
	d = min(d, r.maxTTL)
	if d <= 0 {
		return
	}
	r.cache.put(k, outcome{answer: a}, r.clock.Now().Add(d))
}

func answerTTL(m *dns.Msg, qtype uint16) (uint32, bool) {
	positive := false
	ttl := uint32(1<<32 - 1)
	for _, rr := range m.Answer {
		h := rr.Header()
		ttl = min(ttl, h.Ttl)
		if h.Rrtype == qtype {
			positive = true
		}
	}
	if m.Rcode == dns.RcodeSuccess && positive {
		return ttl, true
	}
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(ttl, soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}

// Has reports whether a lookup of name would be answered from the cache,
// an answer or a remembered failure, without counting a lookup.
func (r *Resolver) Has(name string, qtype uint16) bool {
	if r.cache == nil {
		return false
	}
	_, ok := r.cache.get(cacheKey{name: strings.ToLower(dns.Fqdn(name)), qtype: qtype}, r.clock.Now())
	return ok
}
