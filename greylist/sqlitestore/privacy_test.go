package sqlitestore

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/storetest"
)

// A private store's file holds none of the addresses, subnets or domains
// it was given, yet greylists as before; a store opened again with the
// same secret (another host sharing it) finds the triplet passed.
func TestPrivateStoreFileHoldsNoAddress(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "g.db")
	secret := []byte(greylist.NewSecret())
	open := func() (*Store, greylist.Store) {
		t.Helper()
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		p, err := greylist.NewPrivacy(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := greylist.CheckPrivacy(ctx, s, p, func() (bool, error) { return true, nil }); err != nil {
			t.Fatal(err)
		}
		return s, greylist.PrivateStore{Store: s, P: p}
	}
	raw, s := open()
	g := &greylist.Greylist{Store: s, Rules: greylist.DefaultRules, AutoWhitelist: 1}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	keys := []greylist.Key{
		greylist.DefaultKeyer.Key(netip.MustParseAddr("198.51.100.77"), "alice.secret@sender-private.example", "bob.hidden@rcpt-private.example"),
		{Client: "spf:spf-private.example", Sender: "carol@spf-private.example", Recipient: "dave@rcpt-private.example"},
	}
	for _, k := range keys {
		if res, err := g.Attempt(ctx, k, now); err != nil || res.Outcome != greylist.New {
			t.Fatalf("first attempt: %+v %v", res, err)
		}
		if res, err := g.Attempt(ctx, k, now.Add(10*time.Minute)); err != nil || res.Outcome != greylist.Passed {
			t.Fatalf("retry: %+v %v", res, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	var all []byte
	files, _ := filepath.Glob(path + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if len(all) == 0 {
		t.Fatal("no database bytes read")
	}
	for _, word := range []string{"198.51.100", "alice", "sender-private", "bob", "rcpt-private", "spf-private", "carol", "dave", "spf:"} {
		if bytes.Contains(all, []byte(word)) {
			t.Errorf("the database files hold %q", word)
		}
	}
	raw, s = open()
	defer raw.Close()
	g.Store = s
	for _, k := range keys {
		if st, err := g.Known(ctx, k, now.Add(time.Hour)); err != nil || st != greylist.KnownTriplet {
			t.Errorf("%v after reopening: %v %v, want known", k, st, err)
		}
	}
	// The raw store under the plain key knows nothing.
	if _, found, _ := raw.Lookup(ctx, keys[0]); found {
		t.Error("the plain key is found in a private store")
	}
}

// The privacy mark refuses every mix: plain keys on a private store, a
// private store under another secret, private keys on a store that holds
// plain ones; an empty store is marked; Erase empties it.
func TestCheckPrivacyRefusesMixing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	p1, _ := greylist.NewPrivacy([]byte(greylist.NewSecret()))
	p2, _ := greylist.NewPrivacy([]byte(greylist.NewSecret()))
	empty := func() (bool, error) {
		sum, err := s.Summary(ctx, 0)
		return sum.Triplets == 0 && sum.Clients == 0, err
	}
	if err := greylist.CheckPrivacy(ctx, s, nil, empty); err != nil {
		t.Fatalf("plain on a new store: %v", err)
	}
	g := &greylist.Greylist{Store: s, Rules: greylist.DefaultRules}
	for _, rcpt := range []string{"erased-one@d.example", "erased-two@d.example"} {
		if _, err := g.Attempt(ctx, greylist.Key{Client: "192.0.2.0/24", Sender: "a@b.example", Recipient: rcpt}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := greylist.CheckPrivacy(ctx, s, p1, empty); !errors.Is(err, greylist.ErrPrivacyMismatch) {
		t.Fatalf("private keys on a plain store with data: %v, want a mismatch", err)
	}
	if err := s.Erase(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if b, err := os.ReadFile(path); err != nil || bytes.Contains(b, []byte("erased-")) {
		t.Errorf("the file still holds erased addresses (%v)", err)
	}
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	if err := greylist.CheckPrivacy(ctx, s, p1, empty); err != nil {
		t.Fatalf("private keys on an emptied store: %v", err)
	}
	if mark, _, _ := s.Meta(ctx, greylist.MetaPrivacy); mark != p1.Fingerprint() {
		t.Errorf("mark %q, want %q", mark, p1.Fingerprint())
	}
	if err := greylist.CheckPrivacy(ctx, s, p1, empty); err != nil {
		t.Errorf("the same secret again: %v", err)
	}
	if err := greylist.CheckPrivacy(ctx, s, p2, empty); !errors.Is(err, greylist.ErrPrivacyMismatch) {
		t.Errorf("another secret: %v, want a mismatch", err)
	}
	if err := greylist.CheckPrivacy(ctx, s, nil, empty); !errors.Is(err, greylist.ErrPrivacyMismatch) {
		t.Errorf("plain keys on a private store: %v, want a mismatch", err)
	}
}

func TestExtras(t *testing.T) {
	storetest.RunExtras(t, func(t *testing.T) greylist.Store { return mustOpen(t, filepath.Join(t.TempDir(), "g.db")) })
}

// Under privacy the admin's plain filters (an address, a sender, a
// recipient) find and delete the hashed triplet.
func TestPrivateAdminFilters(t *testing.T) {
	ctx := context.Background()
	raw := mustOpen(t, ":memory:")
	p, _ := greylist.NewPrivacy([]byte(greylist.NewSecret()))
	s := greylist.Private(raw, p, greylist.DefaultKeyer)
	admin, ok := s.(greylist.Admin)
	if !ok {
		t.Fatal("a private SQLite store is no greylist.Admin")
	}
	key := greylist.DefaultKeyer.Key(netip.MustParseAddr("192.0.2.7"), "alice@example.org", "bob@example.net")
	if _, err := s.Attempt(ctx, key, greylist.DefaultRules, time.Now()); err != nil {
		t.Fatal(err)
	}
	list, err := admin.List(ctx, greylist.Filter{Client: "192.0.2.99", Sender: "Alice@Example.org", Recipient: "bob@example.net"})
	if err != nil || len(list) != 1 || strings.Contains(list[0].Client, "192.0.2") {
		t.Fatalf("list by plain filter: %+v %v, want the one hashed triplet", list, err)
	}
	if list, _ := admin.List(ctx, greylist.Filter{Sender: "carol@example.org"}); len(list) != 0 {
		t.Errorf("another sender found %+v", list)
	}
	if _, err := admin.List(ctx, greylist.Filter{Client: "192.0.0.0/16"}); err == nil {
		t.Error("a network wider than the triplets' subnets was accepted")
	}
	if n, err := admin.Delete(ctx, greylist.Filter{Client: "192.0.2.0/24"}); err != nil || n != 1 {
		t.Fatalf("delete by subnet: %d %v", n, err)
	}
	if _, found, _ := s.Lookup(ctx, key); found {
		t.Error("still there after delete")
	}
}
