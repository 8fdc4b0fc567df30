package checks

import (
	"context"
	"net/netip"
	"sync/atomic"
)

// Checker runs the heuristics with one set of scores and patterns. It is
// safe for concurrent use; SetPatterns swaps the patterns under load.
type Checker struct {
	scores   Scores
	resolver Resolver
	patterns atomic.Pointer[Patterns]
}

// NewChecker returns a checker. p nil means DefaultPatterns. With a nil
// resolver a client the MTA knows no name for is not looked up.
func NewChecker(s Scores, p *Patterns, r Resolver) *Checker {
	c := &Checker{scores: s, resolver: r}
	c.SetPatterns(p)
	return c
}

// Scores returns the checker's scores.
func (c *Checker) Scores() Scores { return c.scores }

// SetPatterns replaces the dynamic-name patterns; nil means
// DefaultPatterns.
func (c *Checker) SetPatterns(p *Patterns) {
	if p == nil {
		p = DefaultPatterns()
	}
	c.patterns.Store(p)
}

// Prefetch starts, in the background, the reverse lookup that Run will
// make for a client at addr that the MTA named name, if it will make one,
// and returns at once. Run then finds the answers in the resolver's cache
// or joins the queries in flight, so that the lookup overlaps with the
// caller's other DNS work.
func (c *Checker) Prefetch(ctx context.Context, addr netip.Addr, name string) {
	if name == "" && c.resolver != nil && addr.IsValid() {
		go LookupReverse(ctx, c.resolver, addr) //nolint:errcheck // Run reads the outcome
	}
}

// Run runs every check but SPF (see SPF and SPFScore) and returns their
// results in a fixed order: rdns, helo, dynamic, sender.
//
// When in.Name is empty and the checker has a resolver, the client's name
// is looked up: a name that forward-confirms is used as if the MTA had
// given it (the MTA may have hit a temporary failure), and an unverified
// PTR name still goes through the dynamic check, since an end-user line's
// generic name says as much without an A record behind it.
func (c *Checker) Run(ctx context.Context, in Input) []Result {
	rdns := Reverse(in, c.scores)
	dynIn := in
	if in.Name == "" && c.resolver != nil && in.Addr.IsValid() {
		found, err := LookupReverse(ctx, c.resolver, in.Addr)
		switch {
		case found.Verified != "":
			in.Name = found.Verified
			dynIn = in
			rdns = Result{Check: "rdns", Reason: "verified-by-lookup"}
		case err != nil:
			rdns.Reason = "lookup-failed"
			dynIn.Name = found.PTR
		case found.PTR != "":
			rdns.Reason = "unverified"
			dynIn.Name = found.PTR
		default:
			rdns.Reason = "no-ptr"
		}
	}
	return []Result{
		rdns,
		HELO(in, c.scores),
		Dynamic(dynIn, c.patterns.Load(), c.scores),
		SenderIsRecipient(in, c.scores),
	}
}
