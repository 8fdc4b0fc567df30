package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Admin is a Store that an administrator can look into and change:
// `greymilter db` and the daemon's control socket use it. A store whose
// decisions read a copy in memory (SQLite's index) keeps that copy in step
// with every change made here.
type Admin interface {
	// List returns the triplets that f selects.
	List(ctx context.Context, f Filter) ([]Triplet, error)
	// Delete forgets the triplets that f selects and says how many.
	Delete(ctx context.Context, f Filter) (int, error)
	// Pass marks the triplets that f selects and that have not passed as
	// passed at now, and says how many.
	Pass(ctx context.Context, f Filter, now time.Time) (int, error)
	// Clients returns every client remembered for auto-whitelisting.
	Clients(ctx context.Context) ([]ClientEntry, error)
	// PutTriplets and PutClients store records as given, replacing what
	// is there (import).
	PutTriplets(ctx context.Context, ts []Triplet) error
	PutClients(ctx context.Context, cs []ClientEntry) error
	// AddWhitelist adds (or replaces) a runtime whitelist entry; it takes
	// effect for the next decision.
	AddWhitelist(ctx context.Context, e WhitelistEntry) error
	// RemoveWhitelist removes the entry of a network and says whether
	// there was one.
	RemoveWhitelist(ctx context.Context, network netip.Prefix) (bool, error)
	// Whitelist returns the runtime whitelist entries, expired ones
	// included until a purge removes them.
	Whitelist(ctx context.Context) ([]WhitelistEntry, error)
	// Whitelisted returns the entry that lets addr through at now. It is
	// on the decision path: it must answer from memory.
	Whitelisted(addr netip.Addr, now time.Time) (WhitelistEntry, bool)
}

// Triplet is a stored triplet with its record.
type Triplet struct {
	Key
	Record
}

// ClientEntry is a stored client with its record.
type ClientEntry struct {
	Client string
	ClientRecord
}

// WhitelistEntry lets a client address or network through without
// greylisting, until it expires.
type WhitelistEntry struct {
	Network netip.Prefix
	Added   time.Time
	Expires time.Time // zero: never
	Note    string
}

// Active tells whether the entry applies at now.
func (e WhitelistEntry) Active(now time.Time) bool {
	return e.Expires.IsZero() || now.Before(e.Expires)
}

// MatchWhitelist returns the first active entry of es that contains addr.
func MatchWhitelist(es []WhitelistEntry, addr netip.Addr, now time.Time) (WhitelistEntry, bool) {
	addr = addr.Unmap()
	for _, e := range es {
		if e.Network.Contains(addr) && e.Active(now) {
			return e, true
		}
	}
	return WhitelistEntry{}, false
}

// State selects triplets by whether they passed.
type State int

const (
	// AnyState selects every triplet.
	AnyState State = iota
	// Pending selects triplets still waiting (or never retried).
	Pending
	// PassedState selects triplets that passed.
	PassedState
)

// Filter selects triplets; its zero value selects every one.
type Filter struct {
	// Client is an address or network: it selects the triplets whose
	// client (a subnet or an address) overlaps it. Any other text (an
	// identity such as "spf:example.com") selects that client exactly.
	Client    string
	Sender    string // exact, after NormalizeSender
	Recipient string // exact, after NormalizeRecipient
	State     State
}

// Normalized returns f with its addresses folded as triplet keys fold them.
func (f Filter) Normalized() Filter {
	if f.Sender != "" {
		f.Sender = NormalizeSender(f.Sender)
	}
	if f.Recipient != "" {
		f.Recipient = NormalizeRecipient(f.Recipient)
	}
	f.Client = strings.TrimSpace(f.Client)
	return f
}

// ListQuery is the SQL that lists the triplets f selects, narrowed by
// what SQL compares exactly (the client's network overlap is left to
// Match), with its arguments; placeholder writes the nth (1-based) one in
// the database's style.
func (f Filter) ListQuery(placeholder func(n int) string) (string, []any) {
	var where []string
	var args []any
	if f.Sender != "" {
		args = append(args, f.Sender)
		where = append(where, "sender = "+placeholder(len(args)))
	}
	if f.Recipient != "" {
		args = append(args, f.Recipient)
		where = append(where, "recipient = "+placeholder(len(args)))
	}
	switch f.State {
	case Pending:
		where = append(where, "passed_at = 0")
	case PassedState:
		where = append(where, "passed_at != 0")
	}
	q := `SELECT client, sender, recipient, first_seen, last_seen, passed_at, attempts FROM triplets`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q + " ORDER BY client, sender, recipient", args
}

// Check says what is wrong with f's client, if anything.
func (f Filter) Check() error {
	if _, isNet := parseNet(f.Client); f.Client == "" || isNet || strings.HasPrefix(f.Client, "spf:") {
		return nil
	}
	return fmt.Errorf("client %q: want an address, a network (CIDR) or an identity (spf:DOMAIN)", f.Client)
}

// Empty tells whether f selects every triplet.
func (f Filter) Empty() bool { return f == Filter{} }

// Match tells whether f selects t.
func (f Filter) Match(t Triplet) bool {
	if f.Sender != "" && t.Sender != f.Sender || f.Recipient != "" && t.Recipient != f.Recipient {
		return false
	}
	switch f.State {
	case Pending:
		if t.Passed() {
			return false
		}
	case PassedState:
		if !t.Passed() {
			return false
		}
	}
	if f.Client == "" || f.Client == t.Client {
		return true
	}
	want, ok := parseNet(f.Client)
	if !ok {
		return false
	}
	have, ok := parseNet(t.Client)
	return ok && want.Overlaps(have)
}

// parseNet reads an address (as a one-address network) or a network.
func parseNet(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// ParseNetwork reads a whitelist network: an address or a CIDR network.
func ParseNetwork(s string) (netip.Prefix, error) {
	p, ok := parseNet(strings.TrimSpace(s))
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%q: want an address or a network (CIDR)", s)
	}
	return p, nil
}
