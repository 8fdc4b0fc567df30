package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// AddCounts adds hourly decision counts (greylist.Counter).
func (s *Store) AddCounts(ctx context.Context, counts []greylist.Count) error {
	if len(counts) == 0 {
		return nil
	}
	n := len(counts)
	hours, actions, reasons, ns := make([]int64, n), make([]string, n), make([]string, n), make([]int64, n)
	for i, c := range counts {
		hours[i], actions[i], reasons[i], ns[i] = c.Hour.Unix()/3600, c.Action, c.Reason, c.N
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	// Summed first: one statement may not update a row twice.
	_, err := s.pool.Exec(ctx, `INSERT INTO decision_counts (hour, action, reason, n)
		SELECT hour, action, reason, sum(n) FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS v (hour, action, reason, n)
		GROUP BY hour, action, reason
		ON CONFLICT (hour, action, reason) DO UPDATE SET n = decision_counts.n + excluded.n`, hours, actions, reasons, ns)
	if err != nil {
		return fmt.Errorf("pgstore: counts: %w", s.result(err))
	}
	s.result(nil)
	return nil
}

// Counts returns the hourly decision counts from since on, oldest first.
func (s *Store) Counts(ctx context.Context, since time.Time) ([]greylist.Count, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT hour, action, reason, n FROM decision_counts WHERE hour >= $1 ORDER BY hour, action, reason`, since.Unix()/3600)
	if err != nil {
		return nil, fmt.Errorf("pgstore: counts: %w", s.result(err))
	}
	defer rows.Close()
	var out []greylist.Count
	for rows.Next() {
		var hour int64
		var c greylist.Count
		if err := rows.Scan(&hour, &c.Action, &c.Reason, &c.N); err != nil {
			return nil, fmt.Errorf("pgstore: counts: %w", err)
		}
		c.Hour = time.Unix(hour*3600, 0).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: counts: %w", s.result(err))
	}
	s.result(nil)
	return out, nil
}

// Summary counts the store's contents (greylist.Summarizer); autoWhitelist is the number of
// passes that makes a client auto-whitelisted.
func (s *Store) Summary(ctx context.Context, autoWhitelist int) (greylist.Summary, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var sum greylist.Summary
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM triplets),
		(SELECT count(*) FROM triplets WHERE passed_at != 0),
		(SELECT count(*) FROM clients),
		(SELECT count(*) FROM clients WHERE $1 > 0 AND passes >= $1)`, autoWhitelist).
		Scan(&sum.Triplets, &sum.Passed, &sum.Clients, &sum.AutoWhitelisted)
	if err != nil {
		return sum, fmt.Errorf("pgstore: summary: %w", s.result(err))
	}
	s.result(nil)
	return sum, nil
}
