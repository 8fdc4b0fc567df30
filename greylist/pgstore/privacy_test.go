package pgstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/storetest"
	"github.com/greymilter/greymilter/internal/pgtest"
)

// Two MX hosts on one database with one secret agree on the keys: a
// triplet greylisted at one passes at the other. The rows then hold none
// of the addresses; a host with another secret, or without --privacy, is
// refused; Erase empties the tables.
func TestPrivacySharedSecret(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Shared(t).NewDatabase(t)
	secret := []byte(greylist.NewSecret())
	host := func(secret []byte) (*Store, greylist.Store, error) {
		t.Helper()
		s := openDSN(t, dsn, greylist.Options{Timeout: conformanceTimeout})
		if secret == nil {
			return s, s, greylist.CheckPrivacy(ctx, s, nil, nil)
		}
		p, err := greylist.NewPrivacy(secret)
		if err != nil {
			t.Fatal(err)
		}
		err = greylist.CheckPrivacy(ctx, s, p, func() (bool, error) {
			sum, err := s.Summary(ctx, 0)
			return sum.Triplets == 0 && sum.Clients == 0, err
		})
		return s, greylist.PrivateStore{Store: s, P: p}, err
	}
	raw1, mx1, err := host(secret)
	if err != nil {
		t.Fatal(err)
	}
	_, mx2, err := host(secret)
	if err != nil {
		t.Fatalf("second host with the same secret: %v", err)
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	key := greylist.Key{Client: "198.51.100.0/24", Sender: "alice.pg@sender-private.example", Recipient: "bob.pg@rcpt-private.example"}
	g1 := &greylist.Greylist{Store: mx1, Rules: greylist.DefaultRules, AutoWhitelist: 1}
	g2 := &greylist.Greylist{Store: mx2, Rules: greylist.DefaultRules, AutoWhitelist: 1}
	if res, err := g1.Attempt(ctx, key, now); err != nil || res.Outcome != greylist.New {
		t.Fatalf("first attempt at MX 1: %+v %v", res, err)
	}
	if res, err := g2.Attempt(ctx, key, now.Add(10*time.Minute)); err != nil || res.Outcome != greylist.Passed {
		t.Fatalf("retry at MX 2: %+v %v, want passed", res, err)
	}
	if err := raw1.NoteSlowRetry(ctx, "domain-hash", "client-hash", now); err != nil {
		t.Fatal(err)
	}

	var rows string
	err = raw1.pool.QueryRow(ctx, `SELECT concat_ws(' ',
		(SELECT string_agg(concat_ws(' ', client, sender, recipient), ' ') FROM triplets),
		(SELECT string_agg(client, ' ') FROM clients),
		(SELECT string_agg(concat_ws(' ', domain, client), ' ') FROM slow_retriers),
		(SELECT string_agg(concat_ws(' ', name, value), ' ') FROM meta))`).Scan(&rows)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rows, "privacy hmac-sha256:") {
		t.Fatalf("no privacy mark in %q", rows)
	}
	for _, word := range []string{"198.51.100", "alice", "sender-private", "bob", "rcpt-private"} {
		if strings.Contains(rows, word) {
			t.Errorf("the rows hold %q: %s", word, rows)
		}
	}

	if _, _, err := host([]byte(greylist.NewSecret())); !errors.Is(err, greylist.ErrPrivacyMismatch) {
		t.Errorf("a host with another secret: %v, want a mismatch", err)
	}
	if _, _, err := host(nil); !errors.Is(err, greylist.ErrPrivacyMismatch) {
		t.Errorf("a host without --privacy: %v, want a mismatch", err)
	}
	if err := raw1.Erase(ctx); err != nil {
		t.Fatal(err)
	}
	if sum, err := raw1.Summary(ctx, 0); err != nil || sum.Triplets != 0 || sum.Clients != 0 {
		t.Errorf("after Erase: %+v %v", sum, err)
	}
	if list, err := raw1.SlowRetriers(ctx); err != nil || len(list) != 0 {
		t.Errorf("slow retriers after Erase: %v %v", list, err)
	}
}

func TestExtras(t *testing.T) {
	storetest.RunExtras(t, func(t *testing.T) greylist.Store { return open(t, greylist.Options{Timeout: conformanceTimeout}) })
}
