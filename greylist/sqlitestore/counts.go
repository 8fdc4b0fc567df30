package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// AddCounts adds hourly decision counts (greylist.Counter).
func (s *Store) AddCounts(ctx context.Context, counts []greylist.Count) error {
	return s.do(ctx, func(c *sql.Conn) error {
		st, err := c.PrepareContext(ctx, `INSERT INTO decision_counts (hour, action, reason, n) VALUES (?, ?, ?, ?)
			ON CONFLICT (hour, action, reason) DO UPDATE SET n = n + excluded.n`)
		if err != nil {
			return fmt.Errorf("greylist: counts: %w", err)
		}
		defer st.Close()
		for _, c := range counts {
			if _, err := st.Exec(c.Hour.Unix()/3600, c.Action, c.Reason, c.N); err != nil {
				return fmt.Errorf("greylist: counts: %w", err)
			}
		}
		return nil
	})
}

// Counts returns the hourly decision counts from since on, oldest first.
func (s *Store) Counts(ctx context.Context, since time.Time) ([]greylist.Count, error) {
	var out []greylist.Count
	err := s.read(ctx, func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT hour, action, reason, n FROM decision_counts WHERE hour >= ? ORDER BY hour, action, reason`, since.Unix()/3600)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var hour int64
			var c greylist.Count
			if err := rows.Scan(&hour, &c.Action, &c.Reason, &c.N); err != nil {
				return err
			}
			c.Hour = time.Unix(hour*3600, 0).UTC()
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("greylist: counts: %w", err)
	}
	return out, nil
}

// Summary counts the store's contents; autoWhitelist is the number of
// passes that makes a client auto-whitelisted.
func (s *Store) Summary(ctx context.Context, autoWhitelist int) (greylist.Summary, error) {
	var sum greylist.Summary
	err := s.read(ctx, func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM triplets),
		(SELECT count(*) FROM triplets WHERE passed_at != 0),
		(SELECT count(*) FROM clients),
		(SELECT count(*) FROM clients WHERE ? > 0 AND passes >= ?)`, autoWhitelist, autoWhitelist).
			Scan(&sum.Triplets, &sum.Passed, &sum.Clients, &sum.AutoWhitelisted)
	})
	if err != nil {
		return sum, fmt.Errorf("greylist: summary: %w", err)
	}
	return sum, nil
}

// Retries implements greylist.RetryReporter, reading from the triplets how greylisted triplets came back: the
// real delays of those that passed since passedSince, in the classes of
// bounds, and, of those first greylisted in [from, to), how many were never
// retried (one attempt, no pass).
func (s *Store) Retries(ctx context.Context, passedSince, from, to time.Time, bounds []time.Duration) (greylist.Retries, error) {
	r := greylist.NewRetries(bounds, from, to)
	err := s.read(ctx, func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT passed_at - first_seen FROM triplets WHERE passed_at >= ?`, max(ms(passedSince), 1))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var delayMS int64
			if err := rows.Scan(&delayMS); err != nil {
				return err
			}
			r.Add(time.Duration(delayMS) * time.Millisecond)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return q.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(passed_at = 0 AND attempts = 1), 0)
			FROM triplets WHERE first_seen >= ? AND first_seen < ?`, ms(from), ms(to)).Scan(&r.Greylisted, &r.NeverRetried)
	})
	if err != nil {
		return r, fmt.Errorf("greylist: retries: %w", err)
	}
	return r, nil
}

// Ping implements greylist.Pinger with a read through the writer, which answers
// between its batches only: a stuck writer fails it. It returns when ctx
// ends even if the read has not finished.
func (s *Store) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		done <- s.do(ctx, func(c *sql.Conn) error {
			var one int
			err := c.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM triplets LIMIT 1)`).Scan(&one)
			return err
		})
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
