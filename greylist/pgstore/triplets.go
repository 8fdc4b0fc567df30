package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greymilter/greymilter/greylist"
)

type key = greylist.Key

// cachedRecord is a passed triplet as read at some time.
type cachedRecord struct {
	rec greylist.Record
	at  time.Time
}

type cachedClient struct {
	c  greylist.ClientRecord
	at time.Time
}

// hint is a triplet's record as a lookup just read it (found false: no
// row). The attempt that follows a lookup starts from it: its write only
// takes if the row is still so.
type hint struct {
	rec   greylist.Record
	found bool
}

const (
	selTriplet = `SELECT first_seen, last_seen, passed_at, attempts FROM triplets
		WHERE client = $1 AND sender = $2 AND recipient = $3`
	selClient = `SELECT passes, last_seen FROM clients WHERE client = $1`
	// insTriplet writes a triplet never seen; no row comes back if another
	// attempt wrote it first.
	insTriplet = `INSERT INTO triplets (client, sender, recipient, first_seen, last_seen, passed_at, attempts)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`
	// casTriplet replaces a triplet's record if it is still the one the
	// rules saw ($8-$11) and then, if $12, counts a pass of its client,
	// all in one statement: both or neither.
	casTriplet = `WITH t AS (
		UPDATE triplets SET first_seen = $4, last_seen = $5, passed_at = $6, attempts = $7
		WHERE client = $1 AND sender = $2 AND recipient = $3
		AND first_seen = $8 AND last_seen = $9 AND passed_at = $10 AND attempts = $11
		RETURNING 1
	), c AS (
		INSERT INTO clients (client, passes, last_seen) SELECT $1, 1, $5 FROM t WHERE $12
		ON CONFLICT (client) DO UPDATE SET passes = clients.passes + 1, last_seen = excluded.last_seen
	)
	SELECT count(*) FROM t`
)

// Attempt implements greylist.Store. It first decides from what the lookup
// before it read (or reads now) and writes if the row is still so, which
// costs one round trip in a batch. If another attempt of the triplet got
// in between, it decides again under the row's lock, in a transaction of
// its own: under contention attempts then take turns instead of retrying.
func (s *Store) Attempt(ctx context.Context, k greylist.Key, rules greylist.Rules, now time.Time) (greylist.Result, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	h, known := s.hints.Peek(k)
	if known {
		s.hints.Remove(k)
	} else {
		var err error
		if h.rec, h.found, err = s.read(ctx, k); err != nil {
			return greylist.Result{}, fmt.Errorf("pgstore: attempt: %w", s.result(err))
		}
	}
	res := rules.Apply(h.rec, h.found, now)
	countPass := res.Outcome == greylist.Passed && !rules.NoClientPasses
	won, err := s.write(ctx, k, h, res, countPass)
	if err == nil && !won {
		res, countPass, err = s.lockedAttempt(ctx, k, rules, now)
	}
	if err != nil {
		return greylist.Result{}, fmt.Errorf("pgstore: attempt: %w", s.result(err))
	}
	s.result(nil)
	if res.Record.Passed() && s.passed != nil {
		s.passed.Add(k, cachedRecord{res.Record, time.Now()})
	}
	if countPass && s.clients != nil {
		if c, ok := s.clients.Peek(k.Client); ok {
			c.c.Passes++
			c.c.LastSeen = fromMS(ms(now))
			s.clients.Add(k.Client, c)
		}
	}
	return res, nil
}

// lockedAttempt decides an attempt in a transaction holding the triplet's
// row lock (SELECT ... FOR UPDATE), creating the row if there is none.
// Like a pass of the single-statement path, it locks the triplet's row
// before its client's.
func (s *Store) lockedAttempt(ctx context.Context, k greylist.Key, rules greylist.Rules, now time.Time) (res greylist.Result, countPass bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for {
			var first, last, passed int64
			var attempts int
			err := tx.QueryRow(ctx, selTriplet+" FOR UPDATE", k.Client, k.Sender, k.Recipient).Scan(&first, &last, &passed, &attempts)
			found := err == nil
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			rec := greylist.Record{FirstSeen: fromMS(first), LastSeen: fromMS(last), PassedAt: fromMS(passed), Attempts: attempts}
			res = rules.Apply(rec, found, now)
			r := res.Record
			if !found {
				// Waits for another transaction inserting it, then
				// inserts nothing: read it again, locked.
				tag, err := tx.Exec(ctx, insTriplet, k.Client, k.Sender, k.Recipient, ms(r.FirstSeen), ms(r.LastSeen), ms(r.PassedAt), r.Attempts)
				if err != nil || tag.RowsAffected() == 1 {
					return err
				}
				continue
			}
			countPass = res.Outcome == greylist.Passed && !rules.NoClientPasses
			var n int
			return tx.QueryRow(ctx, casTriplet, k.Client, k.Sender, k.Recipient,
				ms(r.FirstSeen), ms(r.LastSeen), ms(r.PassedAt), r.Attempts,
				first, last, passed, attempts, countPass).Scan(&n)
		}
	})
	return res, countPass, err
}

// read reads a triplet's record from the database.
func (s *Store) read(ctx context.Context, k greylist.Key) (greylist.Record, bool, error) {
	var first, last, passed int64
	var attempts int
	found := true
	err := s.run(ctx, &stmt{key: k, sql: selTriplet, args: []any{k.Client, k.Sender, k.Recipient}, row: func(row pgx.Row) error {
		err := row.Scan(&first, &last, &passed, &attempts)
		if errors.Is(err, pgx.ErrNoRows) {
			found, err = false, nil
		}
		return err
	}})
	if err != nil || !found {
		return greylist.Record{}, false, err
	}
	return greylist.Record{FirstSeen: fromMS(first), LastSeen: fromMS(last), PassedAt: fromMS(passed), Attempts: attempts}, true, nil
}

// write stores res's record if the triplet is still as old says, and tells
// whether it did. A pass that counts towards its client's auto-whitelist
// runs on its own, not in a batch: it locks the client's row too, and in a
// batch that could deadlock with another host's.
func (s *Store) write(ctx context.Context, k greylist.Key, old hint, res greylist.Result, countPass bool) (bool, error) {
	r := res.Record
	if !old.found {
		st := &stmt{write: true, key: k, sql: insTriplet, args: []any{k.Client, k.Sender, k.Recipient, ms(r.FirstSeen), ms(r.LastSeen), ms(r.PassedAt), r.Attempts}}
		err := s.run(ctx, st)
		return st.n == 1, err
	}
	o := old.rec
	args := []any{k.Client, k.Sender, k.Recipient,
		ms(r.FirstSeen), ms(r.LastSeen), ms(r.PassedAt), r.Attempts,
		ms(o.FirstSeen), ms(o.LastSeen), ms(o.PassedAt), o.Attempts, countPass}
	var n int
	if countPass {
		err := s.pool.QueryRow(ctx, casTriplet, args...).Scan(&n)
		return n == 1, err
	}
	err := s.run(ctx, &stmt{write: true, key: k, sql: casTriplet, args: args, row: func(row pgx.Row) error { return row.Scan(&n) }})
	return n == 1, err
}

// Lookup implements greylist.Store: a passed triplet from the cache while
// fresh, anything else from the database.
func (s *Store) Lookup(ctx context.Context, k greylist.Key) (greylist.Record, bool, error) {
	if s.passed != nil {
		if c, ok := s.passed.Get(k); ok {
			if time.Since(c.at) < s.ttl {
				return c.rec, true, nil
			}
			s.passed.Remove(k)
		}
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rec, found, err := s.read(ctx, k)
	if err != nil {
		return greylist.Record{}, false, fmt.Errorf("pgstore: lookup: %w", s.result(err))
	}
	s.result(nil)
	if found && rec.Passed() && s.passed != nil {
		s.passed.Add(k, cachedRecord{rec, time.Now()})
	} else {
		s.hints.Add(k, hint{rec, found})
	}
	return rec, found, nil
}

// Client implements greylist.Store: an auto-whitelisted client from the
// cache while fresh, anything else from the database.
func (s *Store) Client(ctx context.Context, client string) (greylist.ClientRecord, bool, error) {
	if s.clients != nil {
		if c, ok := s.clients.Get(client); ok {
			if time.Since(c.at) < s.ttl {
				return c.c, true, nil
			}
			s.clients.Remove(client)
		}
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var c greylist.ClientRecord
	var last int64
	found := true
	err := s.run(ctx, &stmt{key: greylist.Key{Client: client}, sql: selClient, args: []any{client}, row: func(row pgx.Row) error {
		err := row.Scan(&c.Passes, &last)
		if errors.Is(err, pgx.ErrNoRows) {
			found, err = false, nil
		}
		return err
	}})
	if err != nil {
		return greylist.ClientRecord{}, false, fmt.Errorf("pgstore: client lookup: %w", s.result(err))
	}
	s.result(nil)
	if !found {
		return greylist.ClientRecord{}, false, nil
	}
	c.LastSeen = fromMS(last)
	if s.clients != nil && s.awl > 0 && c.Passes >= s.awl {
		s.clients.Add(client, cachedClient{c, time.Now()})
	}
	return c, true, nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}
