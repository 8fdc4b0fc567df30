package greylist

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/greymilter/greymilter/stats"
)

// CountsMaxAge is how long hourly decision counts are kept.
const CountsMaxAge = 400 * 24 * time.Hour

// AddCounts adds hourly decision counts (stats.Sink).
func (s *SQLite) AddCounts(ctx context.Context, counts []stats.Count) error {
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
func (s *SQLite) Counts(ctx context.Context, since time.Time) ([]stats.Count, error) {
	var out []stats.Count
	err := s.read(ctx, func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT hour, action, reason, n FROM decision_counts WHERE hour >= ? ORDER BY hour, action, reason`, since.Unix()/3600)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var hour int64
			var c stats.Count
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

// Summary is what the store holds.
type Summary struct {
	Triplets, Passed, Clients, AutoWhitelisted int64
}

// Summary counts the store's contents; autoWhitelist is the number of
// passes that makes a client auto-whitelisted.
func (s *SQLite) Summary(ctx context.Context, autoWhitelist int) (Summary, error) {
	var sum Summary
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
