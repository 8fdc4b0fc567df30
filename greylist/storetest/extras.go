package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// RunExtras checks what --privacy and --learn-slow-retriers need of a
// store: its Meta values, Erase, and the slow retriers' table.
func RunExtras(t *testing.T, open Opener) {
	t.Run("Meta", func(t *testing.T) { testMeta(t, open(t)) })
	t.Run("SlowRetriers", func(t *testing.T) { testSlowRetriers(t, open(t)) })
	t.Run("ListSlowRetriers", func(t *testing.T) { testListSlowRetriers(t, open(t)) })
}

func testMeta(t *testing.T, s greylist.Store) {
	ctx := context.Background()
	m, ok := s.(greylist.Meta)
	if !ok {
		t.Fatal("the store is no greylist.Meta")
	}
	if _, found, err := m.Meta(ctx, "x"); err != nil || found {
		t.Fatalf("unset: found %v, %v", found, err)
	}
	for _, v := range []string{"one", "two"} {
		if err := m.SetMeta(ctx, "x", v); err != nil {
			t.Fatal(err)
		}
		if got, found, err := m.Meta(ctx, "x"); err != nil || !found || got != v {
			t.Fatalf("after setting %q: %q %v %v", v, got, found, err)
		}
	}
	if err := m.SetMeta(ctx, "x", ""); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := m.Meta(ctx, "x"); found {
		t.Error("an empty value did not remove the name")
	}
	Attempt(t, s, Key(1), T0)
	if err := s.(greylist.Eraser).Erase(ctx); err != nil {
		t.Fatal(err)
	}
	if sum, err := s.(greylist.Summarizer).Summary(ctx, 0); err != nil || sum.Triplets != 0 {
		t.Errorf("after Erase: %+v %v", sum, err)
	}
}

// testSlowRetriers: late retries and passes per client, summed per
// domain, purged by age.
func testSlowRetriers(t *testing.T, st greylist.Store) {
	ctx := context.Background()
	s, ok := st.(greylist.SlowRetryStore)
	if !ok {
		t.Fatal("the store is no greylist.SlowRetryStore")
	}
	for _, c := range []string{"192.0.2.0/24", "198.51.100.0/24"} {
		if err := s.NoteSlowRetry(ctx, "slow.example", c, T0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.NoteSlowPass(ctx, "slow.example", "192.0.2.0/24", T0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A pass from a client with no late retry is not evidence.
	if err := s.NoteSlowPass(ctx, "slow.example", "203.0.113.0/24", T0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	list, err := s.SlowRetriers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Domain != "slow.example" || list[0].LateClients != 2 || list[0].Passed != 1 || !list[0].LastSeen.Equal(T0.Add(time.Hour)) {
		t.Fatalf("slow retriers %+v, want slow.example: 2 late, 1 passed, last seen %v", list, T0.Add(time.Hour))
	}
	if err := s.PurgeSlowRetriers(ctx, T0.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.SlowRetriers(ctx); len(list) != 1 || list[0].LateClients != 1 {
		t.Errorf("after purging what is older than 30 minutes: %+v, want the client that passed after", list)
	}
	if err := st.(greylist.Eraser).Erase(ctx); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.SlowRetriers(ctx); len(list) != 0 {
		t.Errorf("after Erase: %+v", list)
	}
}

// testListSlowRetriers: what `greymilter db list --slow-retriers` shows,
// by domain, one domain when asked; under privacy the stored hashes, found
// by the domain the admin types (in any case) or by its hash.
func testListSlowRetriers(t *testing.T, st greylist.Store) {
	ctx := context.Background()
	s := st.(greylist.SlowRetryStore)
	p, err := greylist.NewPrivacy([]byte(strings.Repeat("s", greylist.MinSecretLen)))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"zz-slow.example", "aa-slow.example", p.Domain("hidden.example")} {
		if err := s.NoteSlowRetry(ctx, d, "192.0.2.0/24", T0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.NoteSlowPass(ctx, "zz-slow.example", "192.0.2.0/24", T0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	list, hashed, err := greylist.ListSlowRetriers(ctx, st, "")
	if err != nil || hashed || len(list) != 3 || list[1].Domain != "aa-slow.example" || list[2].Domain != "zz-slow.example" {
		t.Fatalf("plain store, all: %+v hashed=%v %v, want 3 sorted by domain (the hex hash first), not hashed", list, hashed, err)
	}
	list, _, err = greylist.ListSlowRetriers(ctx, st, "ZZ-Slow.Example")
	if err != nil || len(list) != 1 || list[0].Domain != "zz-slow.example" || list[0].LateClients != 1 || list[0].Passed != 1 {
		t.Fatalf("plain store, --domain ZZ-Slow.Example: %+v %v, want zz-slow.example: 1 late, 1 passed", list, err)
	}
	if list, _, err = greylist.ListSlowRetriers(ctx, st, "hidden.example"); err != nil || len(list) != 0 {
		t.Errorf("plain store, --domain hidden.example: %+v %v, want nothing (it is stored hashed)", list, err)
	}

	private := greylist.Private(st, p, greylist.Keyer{IPv4Prefix: 24, IPv6Prefix: 64})
	for _, typed := range []string{"Hidden.Example", p.Domain("hidden.example")} {
		list, hashed, err = greylist.ListSlowRetriers(ctx, private, typed)
		if err != nil || !hashed || len(list) != 1 || list[0].Domain != p.Domain("hidden.example") || list[0].LateClients != 1 {
			t.Errorf("private store, --domain %s: %+v hashed=%v %v, want the hash of hidden.example, hashed", typed, list, hashed, err)
		}
	}
	if list, _, err = greylist.ListSlowRetriers(ctx, private, "zz-slow.example"); err != nil || len(list) != 0 {
		t.Errorf("private store, --domain zz-slow.example: %+v %v, want nothing (the name is hashed before looking)", list, err)
	}
}
