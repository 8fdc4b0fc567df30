package greylist

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Private returns store with every key hashed by p before it sees it. A
// store that is an Admin stays one: the filters an administrator types
// are hashed the same way (an address grouped by keyer as triplets are),
// so that `greymilter db` finds what the plain filter would.
func Private(store Store, p *Privacy, keyer Keyer) Store {
	ps := PrivateStore{Store: store, P: p}
	if a, ok := store.(Admin); ok {
		return privateAdmin{PrivateStore: ps, Admin: a, keyer: keyer}
	}
	return ps
}

// Unwrap returns the store under a store made by Private, and its keys;
// a plain store and nil for any other.
func Unwrap(store Store) (Store, *Privacy) {
	switch s := store.(type) {
	case PrivateStore:
		return s.Store, s.P
	case privateAdmin:
		return s.PrivateStore.Store, s.P
	}
	return store, nil
}

// privateAdmin is the Admin of a private store. Listings, exports and
// imports carry the stored (hashed) forms; the runtime whitelist holds the
// networks the administrator typed, as they were typed.
type privateAdmin struct {
	PrivateStore
	Admin
	keyer Keyer
}

// List implements Admin.
func (s privateAdmin) List(ctx context.Context, f Filter) ([]Triplet, error) {
	f, err := s.P.Filter(f, s.keyer)
	if err != nil {
		return nil, err
	}
	return s.Admin.List(ctx, f)
}

// Delete implements Admin.
func (s privateAdmin) Delete(ctx context.Context, f Filter) (int, error) {
	f, err := s.P.Filter(f, s.keyer)
	if err != nil {
		return 0, err
	}
	return s.Admin.Delete(ctx, f)
}

// Pass implements Admin.
func (s privateAdmin) Pass(ctx context.Context, f Filter, now time.Time) (int, error) {
	f, err := s.P.Filter(f, s.keyer)
	if err != nil {
		return 0, err
	}
	return s.Admin.Pass(ctx, f, now)
}

// PutTriplets implements Admin: an export of this private store comes
// back as it was; the plain parts of another store's export are hashed.
func (s privateAdmin) PutTriplets(ctx context.Context, ts []Triplet) error {
	out := make([]Triplet, len(ts))
	for i, t := range ts {
		t.Client = s.P.stored(labelClient, t.Client)
		t.Sender = s.P.stored(labelSender, t.Sender)
		t.Recipient = s.P.stored(labelRecipient, t.Recipient)
		out[i] = t
	}
	return s.Admin.PutTriplets(ctx, out)
}

// PutClients implements Admin, as PutTriplets.
func (s privateAdmin) PutClients(ctx context.Context, cs []ClientEntry) error {
	out := make([]ClientEntry, len(cs))
	for i, c := range cs {
		c.Client = s.P.stored(labelClient, c.Client)
		out[i] = c
	}
	return s.Admin.PutClients(ctx, out)
}

// stored returns s hashed under label, unless it is a hash already.
func (p *Privacy) stored(label, s string) string {
	if isHash(s) {
		return s
	}
	return p.hash(label, s)
}

// isHash tells whether s looks like what hash returns.
func isHash(s string) bool {
	if len(s) != 2*hashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Filter returns the filter that selects in a private store what f
// selects in a plain one: sender and recipient hashed as keys are, and the
// client too once it is named as keys name it: an address becomes the
// subnet keyer groups it in. Hashes have no order, so a network that is
// not one of keyer's subnets cannot be looked for.
func (p *Privacy) Filter(f Filter, keyer Keyer) (Filter, error) {
	f = f.Normalized()
	if f.Sender != "" {
		f.Sender = p.hash(labelSender, f.Sender)
	}
	if f.Recipient != "" {
		f.Recipient = p.hash(labelRecipient, f.Recipient)
	}
	if f.Client == "" {
		return f, nil
	}
	client := f.Client
	if net, ok := parseNet(client); ok {
		if net.IsSingleIP() {
			client = keyer.Client(net.Addr())
		} else if keyer.Client(net.Addr()) != net.String() {
			return f, fmt.Errorf("client %s: under --privacy, give an address, a subnet of the triplets' size (--ipv4-prefix %d, --ipv6-prefix %d) or an identity (spf:DOMAIN)", f.Client, keyer.IPv4Prefix, keyer.IPv6Prefix)
		}
	} else if !strings.HasPrefix(client, "spf:") {
		return f, f.Check()
	}
	f.Client = p.Client(client)
	return f, nil
}
