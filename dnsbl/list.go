// Package dnsbl checks SMTP clients against DNS block lists (DNSBL) and
// allow lists (DNSWL), through the shared caching resolver (package
// resolver).
//
// A List checks one address against a set of zones under a policy (any,
// all, majority, or a hit threshold). Lists that fail abstain: the policy
// is decided on the answers received.
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/resolver"
)

// ErrRefused is the error of a zone that answered with a refusal code
// (see IsRefusal) instead of a listing.
var ErrRefused = errors.New("query refused by the list")

// ErrSuspended is the error of an allow list's zone that failed its last
// RFC 5782 self-test: it abstains, without a lookup, until it passes.
var ErrSuspended = errors.New("zone suspended: it fails the RFC 5782 self-test")

// List checks addresses against a set of DNS zones (block or allow lists)
// under a policy.
type List struct {
	res    *resolver.Resolver
	zones  []Zone
	state  []zoneState // one per zone, same index
	policy Policy
	allow  bool
	log    *slog.Logger
	// metrics are the zones' metrics, same index, when instrumented.
	metrics []zoneMetrics
}

// zoneState is what a list learnt about one of its zones.
type zoneState struct {
	refusals         atomic.Int64
	refusalLogged    atomic.Bool
	selfTestFailures atomic.Int64
	suspended        atomic.Bool
}

// NewList returns a block list of zones queried through res and judged by
// policy. A nil logger means slog.Default().
func NewList(res *resolver.Resolver, policy Policy, log *slog.Logger, zones ...Zone) *List {
	if log == nil {
		log = slog.Default()
	}
	return &List{res: res, zones: zones, state: make([]zoneState, len(zones)), policy: policy, log: log}
}

// NewAllowList returns an allow list (DNSWL): as NewList, but a zone that
// fails the RFC 5782 self-test is suspended until it passes again, since a
// broken allow list would let everybody through.
func NewAllowList(res *resolver.Resolver, policy Policy, log *slog.Logger, zones ...Zone) *List {
	l := NewList(res, policy, log, zones...)
	l.allow = true
	return l
}

// Kind names the list's kind, "dnswl" or "dnsbl", for logs and metrics.
func (l *List) Kind() string {
	if l.allow {
		return "dnswl"
	}
	return "dnsbl"
}

// ZoneStats are a zone's counters.
type ZoneStats struct {
	Zone             string
	Refusals         int64 // answers that were refusal codes
	SelfTestFailures int64 // self-tests failed
	Suspended        bool  // the zone abstains until its self-test passes
}

// Stats returns the counters of every zone, in configuration order.
func (l *List) Stats() []ZoneStats {
	out := make([]ZoneStats, len(l.zones))
	for i := range l.zones {
		st := &l.state[i]
		out[i] = ZoneStats{Zone: l.zones[i].Name, Refusals: st.refusals.Load(),
			SelfTestFailures: st.selfTestFailures.Load(), Suspended: st.suspended.Load()}
	}
	return out
}

// Zones returns the list's zones.
func (l *List) Zones() []Zone { return l.zones }

// Policy returns the list's policy.
func (l *List) Policy() Policy { return l.policy }

// Hit is a zone that lists the address, with the answers that counted.
type Hit struct {
	Zone    *Zone
	Answers []netip.Addr
}

// Abstention is a zone that gave no usable answer.
type Abstention struct {
	Zone string
	Err  error
}

// Result is the outcome of a check. Zones appear in configuration order.
type Result struct {
	// Listed is the policy's verdict.
	Listed bool
	// Hits are the zones that list the address.
	Hits []Hit
	// Clean are the zones that answered without listing it.
	Clean []string
	// Abstained are the zones whose lookup failed, timed out or was
	// refused; the policy ignored them.
	Abstained []Abstention
	// Skipped are the zones whose lookup was cancelled because the
	// outcome was already certain.
	Skipped []string
}

// HitZones returns the names of the zones that list the address.
func (r *Result) HitZones() []string {
	out := make([]string, len(r.Hits))
	for i, h := range r.Hits {
		out[i] = h.Zone.Name
	}
	return out
}

type zoneOutcome struct {
	i       int
	answers []netip.Addr // nil: not listed
	err     error
	done    bool          // false: the lookup was cut short
	took    time.Duration // the servers' answer time; -1 for a cached answer
}

// Check looks addr up in every zone at once and applies the policy,
// cancelling the lookups still running as soon as the outcome is certain.
// It never fails: zones that fail abstain.
func (l *List) Check(ctx context.Context, addr netip.Addr) Result {
	var res Result
	n := len(l.zones)
	if n == 0 {
		return res
	}
	rev := resolver.Reverse(addr)
	// Outcomes are kept by value, on the stack for the usual few zones:
	// a warm check should cost next to nothing.
	var small [8]zoneOutcome
	var outcomes []zoneOutcome
	if n <= len(small) {
		outcomes = small[:n]
	} else {
		outcomes = make([]zoneOutcome, n)
	}
	hits, clean := 0, 0
	count := func(o zoneOutcome) {
		o.done = true
		outcomes[o.i] = o
		l.observe(o)
		switch {
		case o.err != nil:
		case o.answers != nil:
			hits++
		default:
			clean++
		}
	}
	// Answers in the cache are read at once: a warm check starts no
	// goroutine and waits for nothing.
	var ask []int
	for i := range l.zones {
		z := &l.zones[i]
		if l.state[i].suspended.Load() {
			count(zoneOutcome{i: i, err: ErrSuspended})
			continue
		}
		if a, ok := l.res.Cached(rev+"."+z.Name+".", dns.TypeA); ok {
			answers, err := l.listing(i, a)
			count(zoneOutcome{i: i, answers: answers, err: err, took: -1})
			continue
		}
		ask = append(ask, i)
	}
	if _, certain := l.policy.settled(hits, clean, len(ask)); len(ask) > 0 && !certain {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch := make(chan zoneOutcome, len(ask)) // buffered: cancelled lookups never block
		for _, i := range ask {
			go func() {
				start := time.Now()
				answers, err := l.query(ctx, i, rev)
				ch <- zoneOutcome{i: i, answers: answers, err: err, took: time.Since(start)}
			}()
		}
		for pending := len(ask); pending > 0; {
			o := <-ch
			pending--
			count(o)
			if _, certain := l.policy.settled(hits, clean, pending); certain {
				break
			}
		}
	}
	res.Listed = l.policy.listed(hits, clean)
	if hits > 0 {
		res.Hits = make([]Hit, 0, hits)
	}
	if clean > 0 {
		res.Clean = make([]string, 0, clean)
	}
	for i, o := range outcomes {
		z := &l.zones[i]
		switch {
		case !o.done:
			res.Skipped = append(res.Skipped, z.Name)
		case o.err != nil:
			res.Abstained = append(res.Abstained, Abstention{Zone: z.Name, Err: o.err})
		case o.answers != nil:
			res.Hits = append(res.Hits, Hit{Zone: z, Answers: o.answers})
		default:
			res.Clean = append(res.Clean, z.Name)
		}
	}
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.logAnswers(ctx, addr, &res)
	}
	return res
}

// logAnswers writes what every zone answered about addr (-vv).
func (l *List) logAnswers(ctx context.Context, addr netip.Addr, res *Result) {
	for _, h := range res.Hits {
		answers := make([]string, len(h.Answers))
		for i, a := range h.Answers {
			answers[i] = a.String()
		}
		l.log.DebugContext(ctx, "DNS list answer", "client", addr.String(), "zone", h.Zone.Name, "listed", true, "answers", strings.Join(answers, ","))
	}
	for _, z := range res.Clean {
		l.log.DebugContext(ctx, "DNS list answer", "client", addr.String(), "zone", z, "listed", false)
	}
	for _, a := range res.Abstained {
		l.log.DebugContext(ctx, "DNS list answer", "client", addr.String(), "zone", a.Zone, "abstained", true, "err", a.Err)
	}
	for _, z := range res.Skipped {
		l.log.DebugContext(ctx, "DNS list answer", "client", addr.String(), "zone", z, "skipped", true)
	}
}

// query returns the answers of zone i that count as a listing of the
// address whose reversed form is rev, nil when the zone does not list it.
func (l *List) query(ctx context.Context, i int, rev string) ([]netip.Addr, error) {
	a, err := l.res.Lookup(ctx, rev+"."+l.zones[i].Name+".", dns.TypeA)
	if err != nil {
		return nil, err
	}
	return l.listing(i, a)
}

// listing reads zone i's answer a: the addresses that count as a listing,
// nil when the zone does not list the address, an error when it refused the
// query.
func (l *List) listing(i int, a *resolver.Answer) ([]netip.Addr, error) {
	z := &l.zones[i]
	var listed []netip.Addr
	for _, rr := range a.Records {
		rec, ok := rr.(*dns.A)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(rec.A)
		ip = ip.Unmap()
		if IsRefusal(ip) {
			return nil, l.refused(i, ip, rr.Header().Name)
		}
		if z.Counts(ip) {
			listed = append(listed, ip)
		}
	}
	return listed, nil
}

// refused counts a refusal answer of zone i, logs the first one, and
// returns the abstention's error.
func (l *List) refused(i int, answer netip.Addr, query string) error {
	st, z := &l.state[i], &l.zones[i]
	st.refusals.Add(1)
	if !st.refusalLogged.Swap(true) {
		l.log.Warn("DNS list refuses our queries (public resolver? over its query limit?); it abstains",
			"list", l.Kind(), "zone", z.Name, "answer", answer.String(), "query", query)
	}
	return fmt.Errorf("%w: %s answered %s", ErrRefused, z.Name, answer)
}

// maxTXT bounds the reason taken from a TXT record: it goes into an SMTP
// reply line, which RFC 5321 limits to 512 bytes with its code.
const maxTXT = 400

// TXT returns z's TXT record for addr, the list's own reason for listing it
// (Postfix's $rbl_txt), made fit for an SMTP reply: control characters
// become spaces, bytes outside ASCII '?'. It is "" when the list publishes
// none. Ask it only after z listed addr: most lists publish a reason only
// for what they list, and a query per lookup would double their load.
func (l *List) TXT(ctx context.Context, addr netip.Addr, z *Zone) (string, error) {
	a, err := l.res.Lookup(ctx, resolver.Reverse(addr)+"."+z.Name+".", dns.TypeTXT)
	if err != nil {
		return "", err
	}
	for _, rr := range a.Records {
		if rec, ok := rr.(*dns.TXT); ok {
			return smtpText(unescapeTXT(strings.Join(rec.Txt, "")), maxTXT), nil
		}
	}
	return "", nil
}

// unescapeTXT undoes the presentation form in which miekg/dns keeps TXT
// strings: \DDD is the byte of that decimal value, \X is X.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if i+3 < len(s) && isDigits(s[i+1:i+4]) {
				n, _ := strconv.Atoi(s[i+1 : i+4])
				c, i = byte(n), i+3
			} else {
				c, i = s[i+1], i+1
			}
		}
		b = append(b, c)
	}
	return string(b)
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// smtpText makes s printable ASCII, at most n bytes.
func smtpText(s string, n int) string {
	b := []byte(s[:min(len(s), n)])
	for i, c := range b {
		switch {
		case c < ' ' || c == 0x7f:
			b[i] = ' '
		case c > 0x7f:
			b[i] = '?'
		}
	}
	return string(b)
}

// RunSelfTests runs SelfTest at once and then every interval until ctx
// ends: a list can break (its domain lapses, it starts refusing our
// resolver) long after greymilter started.
func (l *List) RunSelfTests(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		l.SelfTest(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SelfTest runs the RFC 5782 section 5 test on every zone at once: the
// zone must list 127.0.0.2 and must not list 127.0.0.1. It logs a warning
// for each zone that fails, counts the failure, and returns the failures.
// An allow list's zone that answers wrongly is suspended until a later
// self-test passes; one whose lookups fail is not (its queries abstain by
// themselves).
func (l *List) SelfTest(ctx context.Context) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for i := range l.zones {
		wg.Go(func() {
			err := l.selfTestZone(ctx, i)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// selfTestZone tests zone i and updates its state.
func (l *List) selfTestZone(ctx context.Context, i int) error {
	z, st := &l.zones[i], &l.state[i]
	answered, err := l.selfTest(ctx, i)
	if err == nil {
		if st.suspended.Swap(false) {
			l.log.Info("DNS list passes the RFC 5782 self-test again; it counts again", "list", l.Kind(), "zone", z.Name)
		}
		return nil
	}
	if ctx.Err() != nil {
		return err // shutting down: not the list's fault
	}
	st.selfTestFailures.Add(1)
	if l.allow && answered {
		st.suspended.Store(true)
		l.log.Warn("DNS list fails the RFC 5782 self-test; suspended until it passes again (check the zone name and the resolver)",
			"list", l.Kind(), "zone", z.Name, "err", err)
		return err
	}
	l.log.Warn("DNS list fails the RFC 5782 self-test; check the zone name and the resolver",
		"list", l.Kind(), "zone", z.Name, "err", err)
	return err
}

// selfTest runs the test on zone i; answered tells whether the zone
// answered (wrongly, when err is set) rather than the lookups failing.
func (l *List) selfTest(ctx context.Context, i int) (answered bool, err error) {
	z := &l.zones[i]
	for _, tc := range []struct {
		addr   string
		listed bool
	}{{"127.0.0.2", true}, {"127.0.0.1", false}} {
		a, err := l.res.Lookup(ctx, resolver.Reverse(netip.MustParseAddr(tc.addr))+"."+z.Name+".", dns.TypeA)
		if err != nil {
			return false, fmt.Errorf("dnsbl: self-test of %s: %w", z.Name, err)
		}
		var answers []string
		listed := false
		for _, rr := range a.Records {
			if rec, ok := rr.(*dns.A); ok {
				ip, _ := netip.AddrFromSlice(rec.A)
				ip = ip.Unmap()
				answers = append(answers, ip.String())
				if IsRefusal(ip) {
					l.state[i].refusals.Add(1)
					return true, fmt.Errorf("dnsbl: self-test of %s: %w (answer %s)", z.Name, ErrRefused, ip)
				}
				listed = listed || loopback8.Contains(ip)
			}
		}
		if listed != tc.listed {
			got := "not listed"
			if len(answers) > 0 {
				got = "answers " + strings.Join(answers, ",")
			}
			return true, fmt.Errorf("dnsbl: self-test of %s: %s should be listed=%v, got %s", z.Name, tc.addr, tc.listed, got)
		}
	}
	return true, nil
}
