package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// ErrRefused is the error of a zone that answered with a refusal code
// (see IsRefusal) instead of a listing.
var ErrRefused = errors.New("query refused by the list")

// List checks addresses against a set of DNS zones (block or allow lists)
// under a policy.
type List struct {
	res     *Resolver
	zones   []Zone
	policy  Policy
	log     *slog.Logger
	refused sync.Map // zone name -> struct{}: refusal already logged
}

// NewList returns a list of zones queried through res and judged by
// policy. A nil logger means slog.Default().
func NewList(res *Resolver, policy Policy, log *slog.Logger, zones ...Zone) *List {
	if log == nil {
		log = slog.Default()
	}
	return &List{res: res, zones: zones, policy: policy, log: log}
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
	done    bool // false: the lookup was cut short
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
	rev := Reverse(addr)
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
		if a, ok := l.res.Cached(rev+"."+z.Name+".", dns.TypeA); ok {
			answers, err := l.listing(z, a)
			count(zoneOutcome{i: i, answers: answers, err: err})
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
				answers, err := l.query(ctx, &l.zones[i], rev)
				ch <- zoneOutcome{i: i, answers: answers, err: err}
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
	return res
}

// query returns the answers of z that count as a listing of the address
// whose reversed form is rev, nil when z does not list it.
func (l *List) query(ctx context.Context, z *Zone, rev string) ([]netip.Addr, error) {
	a, err := l.res.Lookup(ctx, rev+"."+z.Name+".", dns.TypeA)
	if err != nil {
		return nil, err
	}
	return l.listing(z, a)
}

// listing reads z's answer a: the addresses that count as a listing, nil
// when z does not list the address, an error when z refused the query.
func (l *List) listing(z *Zone, a *Answer) ([]netip.Addr, error) {
	var listed []netip.Addr
	for _, rr := range a.Records {
		rec, ok := rr.(*dns.A)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(rec.A)
		ip = ip.Unmap()
		if IsRefusal(ip) {
			err := fmt.Errorf("%w: %s answered %s", ErrRefused, z.Name, ip)
			if _, logged := l.refused.LoadOrStore(z.Name, struct{}{}); !logged {
				l.log.Warn("DNS list refuses our queries (public resolver? rate limit?); it abstains",
					"zone", z.Name, "answer", ip.String(), "query", rr.Header().Name)
			}
			return nil, err
		}
		if z.Counts(ip) {
			listed = append(listed, ip)
		}
	}
	return listed, nil
}

// SelfTest runs the RFC 5782 section 5 test on every zone at once: the
// zone must list 127.0.0.2 and must not list 127.0.0.1. It logs a warning
// for each zone that fails and returns the failures.
func (l *List) SelfTest(ctx context.Context) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for i := range l.zones {
		z := &l.zones[i]
		wg.Go(func() {
			if err := l.selfTest(ctx, z); err != nil {
				l.log.Warn("DNS list fails the RFC 5782 self-test; check the zone name and the resolver",
					"zone", z.Name, "error", err.Error())
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

func (l *List) selfTest(ctx context.Context, z *Zone) error {
	for _, tc := range []struct {
		addr   string
		listed bool
	}{{"127.0.0.2", true}, {"127.0.0.1", false}} {
		a, err := l.res.Lookup(ctx, Reverse(netip.MustParseAddr(tc.addr))+"."+z.Name+".", dns.TypeA)
		if err != nil {
			return fmt.Errorf("dnsbl: self-test of %s: %w", z.Name, err)
		}
		var answers []string
		listed := false
		for _, rr := range a.Records {
			if rec, ok := rr.(*dns.A); ok {
				ip, _ := netip.AddrFromSlice(rec.A)
				ip = ip.Unmap()
				answers = append(answers, ip.String())
				if IsRefusal(ip) {
					return fmt.Errorf("dnsbl: self-test of %s: %w (answer %s)", z.Name, ErrRefused, ip)
				}
				listed = listed || loopback8.Contains(ip)
			}
		}
		if listed != tc.listed {
			got := "not listed"
			if len(answers) > 0 {
				got = "answers " + strings.Join(answers, ",")
			}
			return fmt.Errorf("dnsbl: self-test of %s: %s should be listed=%v, got %s", z.Name, tc.addr, tc.listed, got)
		}
	}
	return nil
}
