package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greymilter/greymilter/greylist"
)

// Meta returns a named value about the database (greylist.Meta).
func (s *Store) Meta(ctx context.Context, name string) (string, bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var value string
	err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE name = $1`, name).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		s.result(nil)
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("pgstore: meta %s: %w", name, s.result(err))
	}
	s.result(nil)
	return value, true, nil
}

// SetMeta sets a named value about the database; "" removes it.
func (s *Store) SetMeta(ctx context.Context, name, value string) error {
	q, args := `INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, []any{name, value}
	if value == "" {
		q, args = `DELETE FROM meta WHERE name = $1`, []any{name}
	}
	return s.exec(ctx, "set meta "+name, q, args...)
}

// Erase empties every table that names a client, sender or recipient
// (greylist.Eraser). TRUNCATE gives the tables new files, so the old
// rows are not left in dead tuples; the local caches are not updated: the
// store must be closed and opened again.
func (s *Store) Erase(ctx context.Context) error {
	return s.exec(ctx, "erase", `TRUNCATE triplets, clients, slow_retriers`)
}

// NoteSlowRetry records a late retry (greylist.SlowRetryStore).
func (s *Store) NoteSlowRetry(ctx context.Context, domain, client string, now time.Time) error {
	return s.exec(ctx, "slow retriers: late retry", `INSERT INTO slow_retriers (domain, client, late_at) VALUES ($1, $2, $3)
		ON CONFLICT (domain, client) DO UPDATE SET late_at = excluded.late_at`, domain, client, ms(now))
}

// NoteSlowPass records a pass from a client that retried late before.
func (s *Store) NoteSlowPass(ctx context.Context, domain, client string, now time.Time) error {
	return s.exec(ctx, "slow retriers: pass", `UPDATE slow_retriers SET passed_at = $1 WHERE domain = $2 AND client = $3`, ms(now), domain, client)
}

// PurgeSlowRetriers forgets clients whose late retry and pass are both
// older than before.
func (s *Store) PurgeSlowRetriers(ctx context.Context, before time.Time) error {
	return s.exec(ctx, "slow retriers: purge", `DELETE FROM slow_retriers WHERE greatest(late_at, passed_at) < $1`, ms(before))
}

// SlowRetriers sums up the late retries on record per domain.
func (s *Store) SlowRetriers(ctx context.Context) ([]greylist.SlowRetrier, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT domain, count(*), count(*) FILTER (WHERE passed_at != 0), max(greatest(late_at, passed_at))
		FROM slow_retriers GROUP BY domain ORDER BY domain`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: slow retriers: %w", s.result(err))
	}
	defer rows.Close()
	var out []greylist.SlowRetrier
	for rows.Next() {
		var r greylist.SlowRetrier
		var late, passed, last int64
		if err := rows.Scan(&r.Domain, &late, &passed, &last); err != nil {
			return nil, fmt.Errorf("pgstore: slow retriers: %w", err)
		}
		r.LateClients, r.Passed, r.LastSeen = int(late), int(passed), fromMS(last)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: slow retriers: %w", s.result(err))
	}
	s.result(nil)
	return out, nil
}

func (s *Store) exec(ctx context.Context, what, query string, args ...any) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("pgstore: %s: %w", what, s.result(err))
	}
	s.result(nil)
	return nil
}
