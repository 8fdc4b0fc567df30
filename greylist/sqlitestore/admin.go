package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

var _ greylist.Admin = (*Store)(nil)

// adminState is what the admin operations keep beside the store: the
// runtime whitelist in memory, so that decisions read no database.
type adminState struct {
	whitelist atomic.Pointer[[]greylist.WhitelistEntry]
	// wlMu makes a whitelist write and the reload of the copy one step, so
	// that two writes cannot leave the older copy in place.
	wlMu sync.Mutex
}

// List implements greylist.Admin. It reads the database, not the index:
// the index holds hashes, not the triplets' names.
func (s *Store) List(ctx context.Context, f greylist.Filter) ([]greylist.Triplet, error) {
	var out []greylist.Triplet
	err := s.read(ctx, func(q querier) error {
		out = out[:0]
		query, args := f.ListQuery(func(int) string { return "?" })
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t greylist.Triplet
			var first, last, passed int64
			if err := rows.Scan(&t.Client, &t.Sender, &t.Recipient, &first, &last, &passed, &t.Attempts); err != nil {
				return err
			}
			t.FirstSeen, t.LastSeen, t.PassedAt = fromMS(first), fromMS(last), fromMS(passed)
			if f.Match(t) {
				out = append(out, t)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("greylist: list: %w", err)
	}
	return out, nil
}

// Delete implements greylist.Admin: the rows go in the writer, and the
// index forgets them once that commits.
func (s *Store) Delete(ctx context.Context, f greylist.Filter) (int, error) {
	ts, err := s.List(ctx, f)
	if err != nil || len(ts) == 0 {
		return 0, err
	}
	n := 0
	err = s.do(ctx, func(c *sql.Conn) error {
		n = 0
		for _, t := range ts {
			res, err := c.ExecContext(ctx, `DELETE FROM triplets WHERE client = ? AND sender = ? AND recipient = ?`, t.Client, t.Sender, t.Recipient)
			if err != nil {
				return fmt.Errorf("greylist: delete: %w", err)
			}
			if k, _ := res.RowsAffected(); k > 0 {
				n++
				s.stage(change{h: s.ix.hash(t.Key), deleted: true})
			}
		}
		return nil
	})
	return n, err
}

// Pass implements greylist.Admin.
func (s *Store) Pass(ctx context.Context, f greylist.Filter, now time.Time) (int, error) {
	f.State = greylist.Pending
	ts, err := s.List(ctx, f)
	if err != nil || len(ts) == 0 {
		return 0, err
	}
	for i := range ts {
		ts[i].PassedAt, ts[i].LastSeen = now, now
	}
	return len(ts), s.PutTriplets(ctx, ts)
}

// PutTriplets implements greylist.Admin.
func (s *Store) PutTriplets(ctx context.Context, ts []greylist.Triplet) error {
	return s.do(ctx, func(*sql.Conn) error {
		for _, t := range ts {
			if _, err := s.upTriplet.Exec(t.Client, t.Sender, t.Recipient, ms(t.FirstSeen), ms(t.LastSeen), ms(t.PassedAt), t.Attempts); err != nil {
				return fmt.Errorf("greylist: write triplet: %w", err)
			}
			s.stage(change{h: s.ix.hash(t.Key), rec: toMem(t.Record)})
		}
		return nil
	})
}

// Clients implements greylist.Admin.
func (s *Store) Clients(ctx context.Context) ([]greylist.ClientEntry, error) {
	var out []greylist.ClientEntry
	err := s.read(ctx, func(q querier) error {
		out = out[:0]
		rows, err := q.QueryContext(ctx, `SELECT client, passes, last_seen FROM clients ORDER BY client`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c greylist.ClientEntry
			var last int64
			if err := rows.Scan(&c.Client, &c.Passes, &last); err != nil {
				return err
			}
			c.LastSeen = fromMS(last)
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("greylist: clients: %w", err)
	}
	return out, nil
}

// PutClients implements greylist.Admin.
func (s *Store) PutClients(ctx context.Context, cs []greylist.ClientEntry) error {
	return s.do(ctx, func(c *sql.Conn) error {
		for _, e := range cs {
			if _, err := c.ExecContext(ctx, `INSERT INTO clients (client, passes, last_seen) VALUES (?, ?, ?)
				ON CONFLICT (client) DO UPDATE SET passes = excluded.passes, last_seen = excluded.last_seen`,
				e.Client, e.Passes, ms(e.LastSeen)); err != nil {
				return fmt.Errorf("greylist: write client: %w", err)
			}
			// The index keeps last-seen times as the database gives them back.
			e.LastSeen = fromMS(ms(e.LastSeen))
			s.stage(change{client: e.Client, crec: e.ClientRecord})
		}
		return nil
	})
}

// AddWhitelist implements greylist.Admin.
func (s *Store) AddWhitelist(ctx context.Context, e greylist.WhitelistEntry) error {
	if !e.Network.IsValid() {
		return fmt.Errorf("greylist: whitelist: no network")
	}
	return s.writeWhitelist(ctx, func(c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `INSERT INTO whitelist (network, added, expires, note) VALUES (?, ?, ?, ?)
			ON CONFLICT (network) DO UPDATE SET added = excluded.added, expires = excluded.expires, note = excluded.note`,
			e.Network.Masked().String(), ms(e.Added), ms(e.Expires), e.Note)
		return err
	})
}

// RemoveWhitelist implements greylist.Admin.
func (s *Store) RemoveWhitelist(ctx context.Context, network netip.Prefix) (bool, error) {
	var n int64
	err := s.writeWhitelist(ctx, func(c *sql.Conn) error {
		res, err := c.ExecContext(ctx, `DELETE FROM whitelist WHERE network = ?`, network.Masked().String())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n > 0, err
}

// writeWhitelist runs a whitelist change in the writer, then reloads the
// copy in memory from what was committed.
func (s *Store) writeWhitelist(ctx context.Context, fn func(c *sql.Conn) error) error {
	s.admin.wlMu.Lock()
	defer s.admin.wlMu.Unlock()
	if err := s.do(ctx, fn); err != nil {
		return fmt.Errorf("greylist: whitelist: %w", err)
	}
	return s.loadWhitelist(ctx)
}

// Whitelist implements greylist.Admin.
func (s *Store) Whitelist(ctx context.Context) ([]greylist.WhitelistEntry, error) {
	var out []greylist.WhitelistEntry
	err := s.read(ctx, func(q querier) error {
		var err error
		out, err = readWhitelist(ctx, q)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("greylist: whitelist: %w", err)
	}
	return out, nil
}

// Whitelisted implements greylist.Admin, from the copy in memory.
func (s *Store) Whitelisted(addr netip.Addr, now time.Time) (greylist.WhitelistEntry, bool) {
	es := s.admin.whitelist.Load()
	if es == nil {
		return greylist.WhitelistEntry{}, false
	}
	return greylist.MatchWhitelist(*es, addr, now)
}

// loadWhitelist reads the runtime whitelist into memory.
func (s *Store) loadWhitelist(ctx context.Context) error {
	var es []greylist.WhitelistEntry
	err := s.read(ctx, func(q querier) error {
		var err error
		es, err = readWhitelist(ctx, q)
		return err
	})
	if err != nil {
		return fmt.Errorf("greylist: reading the whitelist: %w", err)
	}
	s.admin.whitelist.Store(&es)
	return nil
}

func readWhitelist(ctx context.Context, q querier) ([]greylist.WhitelistEntry, error) {
	rows, err := q.QueryContext(ctx, `SELECT network, added, expires, note FROM whitelist ORDER BY network`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []greylist.WhitelistEntry
	for rows.Next() {
		var network, note string
		var added, expires int64
		if err := rows.Scan(&network, &added, &expires, &note); err != nil {
			return nil, err
		}
		p, err := netip.ParsePrefix(network)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", network, err)
		}
		out = append(out, greylist.WhitelistEntry{Network: p, Added: fromMS(added), Expires: fromMS(expires), Note: note})
	}
	return out, rows.Err()
}
