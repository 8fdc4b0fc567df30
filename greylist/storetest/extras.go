package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// RunExtras checks what --privacy and --learn-slow-retriers need of a
// store: its Meta values, Erase, and the slow retriers' table.
func RunExtras(t *testing.T, open Opener) {
	t.Run("Meta", func(t *testing.T) { testMeta(t, open(t)) })
	t.Run("SlowRetriers", func(t *testing.T) { testSlowRetriers(t, open(t)) })
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
