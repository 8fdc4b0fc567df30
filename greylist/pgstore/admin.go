package pgstore

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/greymilter/greymilter/greylist"
)

var _ greylist.Admin = (*Store)(nil)

// whitelistRefresh is how long the copy in memory of the runtime whitelist
// is trusted before it is read again: other hosts add entries too. An
// entry added through this store is in force at once. A variable for the
// tests.
var whitelistRefresh = 30 * time.Second

// adminState is what the admin operations keep beside the store: the
// runtime whitelist in memory, so that decisions read no database for it.
type adminState struct {
	whitelist atomic.Pointer[whitelistCopy]
	reloading atomic.Bool
	// wlMu makes a whitelist write and the reload of the copy one step.
	wlMu sync.Mutex
}

type whitelistCopy struct {
	entries []greylist.WhitelistEntry
	at      time.Time
}

// adminCtx bounds an admin operation: like a purge, it is no decision and
// may take longer than one.
func adminCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, purgeTimeout)
}

// List implements greylist.Admin.
func (s *Store) List(ctx context.Context, f greylist.Filter) ([]greylist.Triplet, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	q, args := f.ListQuery(func(n int) string { return "$" + strconv.Itoa(n) })
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list: %w", s.result(err))
	}
	defer rows.Close()
	var out []greylist.Triplet
	for rows.Next() {
		var t greylist.Triplet
		var first, last, passed int64
		if err := rows.Scan(&t.Client, &t.Sender, &t.Recipient, &first, &last, &passed, &t.Attempts); err != nil {
			return nil, fmt.Errorf("pgstore: list: %w", err)
		}
		t.FirstSeen, t.LastSeen, t.PassedAt = fromMS(first), fromMS(last), fromMS(passed)
		if f.Match(t) {
			out = append(out, t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: list: %w", s.result(err))
	}
	return out, nil
}

// forget drops what this host remembers of a triplet, after an admin
// change of it.
func (s *Store) forget(k greylist.Key) {
	if s.passed != nil {
		s.passed.Remove(k)
	}
	s.hints.Remove(k)
}

// inTx runs fn in one transaction.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx pgx.Tx) error) error {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, fn)
	if err != nil {
		return fmt.Errorf("pgstore: %s: %w", what, s.result(err))
	}
	return nil
}

// Delete implements greylist.Admin.
func (s *Store) Delete(ctx context.Context, f greylist.Filter) (int, error) {
	ts, err := s.List(ctx, f)
	if err != nil || len(ts) == 0 {
		return 0, err
	}
	return s.eachListed(ctx, "delete", ts, func(tx pgx.Tx, t greylist.Triplet) (pgconn.CommandTag, error) {
		return tx.Exec(ctx, `DELETE FROM triplets WHERE client = $1 AND sender = $2 AND recipient = $3`, t.Client, t.Sender, t.Recipient)
	})
}

// Pass implements greylist.Admin.
func (s *Store) Pass(ctx context.Context, f greylist.Filter, now time.Time) (int, error) {
	f.State = greylist.Pending
	ts, err := s.List(ctx, f)
	if err != nil || len(ts) == 0 {
		return 0, err
	}
	return s.eachListed(ctx, "pass", ts, func(tx pgx.Tx, t greylist.Triplet) (pgconn.CommandTag, error) {
		return tx.Exec(ctx, `UPDATE triplets SET passed_at = $4, last_seen = $4
			WHERE client = $1 AND sender = $2 AND recipient = $3 AND passed_at = 0`, t.Client, t.Sender, t.Recipient, ms(now))
	})
}

// eachListed runs change on every listed triplet in one transaction and
// returns how many rows it touched; this host's cached copies of them are
// forgotten whatever the outcome.
func (s *Store) eachListed(ctx context.Context, what string, ts []greylist.Triplet, change func(pgx.Tx, greylist.Triplet) (pgconn.CommandTag, error)) (int, error) {
	n := 0
	err := s.inTx(ctx, what, func(tx pgx.Tx) error {
		n = 0
		for _, t := range ts {
			tag, err := change(tx, t)
			if err != nil {
				return err
			}
			n += int(tag.RowsAffected())
		}
		return nil
	})
	for _, t := range ts {
		s.forget(t.Key)
	}
	return n, err
}

// PutTriplets implements greylist.Admin.
func (s *Store) PutTriplets(ctx context.Context, ts []greylist.Triplet) error {
	err := s.inTx(ctx, "write triplets", func(tx pgx.Tx) error {
		for _, t := range ts {
			if _, err := tx.Exec(ctx, `INSERT INTO triplets (client, sender, recipient, first_seen, last_seen, passed_at, attempts)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (client, sender, recipient) DO UPDATE SET first_seen = excluded.first_seen,
				last_seen = excluded.last_seen, passed_at = excluded.passed_at, attempts = excluded.attempts`,
				t.Client, t.Sender, t.Recipient, ms(t.FirstSeen), ms(t.LastSeen), ms(t.PassedAt), t.Attempts); err != nil {
				return err
			}
		}
		return nil
	})
	for _, t := range ts {
		s.forget(t.Key)
	}
	return err
}

// Clients implements greylist.Admin.
func (s *Store) Clients(ctx context.Context) ([]greylist.ClientEntry, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT client, passes, last_seen FROM clients ORDER BY client`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: clients: %w", s.result(err))
	}
	defer rows.Close()
	var out []greylist.ClientEntry
	for rows.Next() {
		var c greylist.ClientEntry
		var last int64
		if err := rows.Scan(&c.Client, &c.Passes, &last); err != nil {
			return nil, fmt.Errorf("pgstore: clients: %w", err)
		}
		c.LastSeen = fromMS(last)
		out = append(out, c)
	}
	return out, rows.Err()
}

// PutClients implements greylist.Admin.
func (s *Store) PutClients(ctx context.Context, cs []greylist.ClientEntry) error {
	err := s.inTx(ctx, "write clients", func(tx pgx.Tx) error {
		for _, c := range cs {
			if _, err := tx.Exec(ctx, `INSERT INTO clients (client, passes, last_seen) VALUES ($1, $2, $3)
				ON CONFLICT (client) DO UPDATE SET passes = excluded.passes, last_seen = excluded.last_seen`,
				c.Client, c.Passes, ms(c.LastSeen)); err != nil {
				return err
			}
		}
		return nil
	})
	if s.clients != nil {
		for _, c := range cs {
			s.clients.Remove(c.Client)
		}
	}
	return err
}

// AddWhitelist implements greylist.Admin.
func (s *Store) AddWhitelist(ctx context.Context, e greylist.WhitelistEntry) error {
	if !e.Network.IsValid() {
		return fmt.Errorf("pgstore: whitelist: no network")
	}
	return s.writeWhitelist(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO whitelist (network, added, expires, note) VALUES ($1, $2, $3, $4)
			ON CONFLICT (network) DO UPDATE SET added = excluded.added, expires = excluded.expires, note = excluded.note`,
			e.Network.Masked().String(), ms(e.Added), ms(e.Expires), e.Note)
		return err
	})
}

// RemoveWhitelist implements greylist.Admin.
func (s *Store) RemoveWhitelist(ctx context.Context, network netip.Prefix) (bool, error) {
	var n int64
	err := s.writeWhitelist(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM whitelist WHERE network = $1`, network.Masked().String())
		n = tag.RowsAffected()
		return err
	})
	return n > 0, err
}

func (s *Store) writeWhitelist(ctx context.Context, fn func(tx pgx.Tx) error) error {
	s.admin.wlMu.Lock()
	defer s.admin.wlMu.Unlock()
	if err := s.inTx(ctx, "whitelist", fn); err != nil {
		return err
	}
	return s.loadWhitelist(ctx)
}

// Whitelist implements greylist.Admin.
func (s *Store) Whitelist(ctx context.Context) ([]greylist.WhitelistEntry, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT network, added, expires, note FROM whitelist ORDER BY network`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: whitelist: %w", s.result(err))
	}
	defer rows.Close()
	var out []greylist.WhitelistEntry
	for rows.Next() {
		var network, note string
		var added, expires int64
		if err := rows.Scan(&network, &added, &expires, &note); err != nil {
			return nil, fmt.Errorf("pgstore: whitelist: %w", err)
		}
		p, err := netip.ParsePrefix(network)
		if err != nil {
			return nil, fmt.Errorf("pgstore: whitelist: network %q: %w", network, err)
		}
		out = append(out, greylist.WhitelistEntry{Network: p, Added: fromMS(added), Expires: fromMS(expires), Note: note})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: whitelist: %w", s.result(err))
	}
	return out, nil
}

// loadWhitelist reads the runtime whitelist into memory.
func (s *Store) loadWhitelist(ctx context.Context) error {
	es, err := s.Whitelist(ctx)
	if err != nil {
		return err
	}
	s.admin.whitelist.Store(&whitelistCopy{entries: es, at: time.Now()})
	return nil
}

// Whitelisted implements greylist.Admin, from the copy in memory; a copy
// older than whitelistRefresh is read again in the background, so that
// entries other hosts added arrive, and a database outage costs no
// decision any time.
func (s *Store) Whitelisted(addr netip.Addr, now time.Time) (greylist.WhitelistEntry, bool) {
	c := s.admin.whitelist.Load()
	if c == nil {
		return greylist.WhitelistEntry{}, false
	}
	if time.Since(c.at) > whitelistRefresh && s.admin.reloading.CompareAndSwap(false, true) {
		go func() {
			defer s.admin.reloading.Store(false)
			ctx, cancel := s.bound(context.Background())
			defer cancel()
			if err := s.loadWhitelist(ctx); err != nil {
				// Tried again after another whitelistRefresh, not at
				// every decision of an outage.
				s.admin.whitelist.CompareAndSwap(c, &whitelistCopy{entries: c.entries, at: time.Now()})
				s.log.Warn("reading the runtime whitelist failed; the last copy stays", "err", err)
			}
		}()
	}
	return greylist.MatchWhitelist(c.entries, addr, now)
}
