package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// NoteSlowRetry records a late retry (greylist.SlowRetryStore).
func (s *Store) NoteSlowRetry(ctx context.Context, domain, client string, now time.Time) error {
	return s.slowExec(ctx, "late retry", `INSERT INTO slow_retriers (domain, client, late_at) VALUES (?, ?, ?)
		ON CONFLICT (domain, client) DO UPDATE SET late_at = excluded.late_at`, domain, client, ms(now))
}

// NoteSlowPass records a pass from a client that retried late before.
func (s *Store) NoteSlowPass(ctx context.Context, domain, client string, now time.Time) error {
	return s.slowExec(ctx, "pass", `UPDATE slow_retriers SET passed_at = ? WHERE domain = ? AND client = ?`, ms(now), domain, client)
}

// PurgeSlowRetriers forgets clients whose late retry and pass are both
// older than before.
func (s *Store) PurgeSlowRetriers(ctx context.Context, before time.Time) error {
	return s.slowExec(ctx, "purge", `DELETE FROM slow_retriers WHERE max(late_at, passed_at) < ?`, ms(before))
}

func (s *Store) slowExec(ctx context.Context, what, query string, args ...any) error {
	err := s.do(ctx, func(c *sql.Conn) error {
		_, err := c.ExecContext(ctx, query, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("greylist: slow retriers: %s: %w", what, err)
	}
	return nil
}

// SlowRetriers sums up the late retries on record per domain.
func (s *Store) SlowRetriers(ctx context.Context) ([]greylist.SlowRetrier, error) {
	var out []greylist.SlowRetrier
	err := s.read(ctx, func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT domain, count(*), count(*) FILTER (WHERE passed_at != 0), max(max(late_at, passed_at))
			FROM slow_retriers GROUP BY domain ORDER BY domain`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r greylist.SlowRetrier
			var last int64
			if err := rows.Scan(&r.Domain, &r.LateClients, &r.Passed, &last); err != nil {
				return err
			}
			r.LastSeen = fromMS(last)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("greylist: slow retriers: %w", err)
	}
	return out, nil
}
