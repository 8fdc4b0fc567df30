package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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

// Retries implements greylist.RetryReporter: the real delays of the
// triplets that passed since passedSince, in the classes of bounds, and of
// those first greylisted in [from, to) how many were never retried.
func (s *Store) Retries(ctx context.Context, passedSince, from, to time.Time, bounds []time.Duration) (greylist.Retries, error) {
	r := greylist.NewRetries(bounds, from, to)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT passed_at - first_seen FROM triplets WHERE passed_at >= $1`, max(ms(passedSince), 1))
	if err != nil {
		return r, fmt.Errorf("pgstore: retries: %w", s.result(err))
	}
	delays, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return r, fmt.Errorf("pgstore: retries: %w", s.result(err))
	}
	for _, d := range delays {
		r.Add(time.Duration(d) * time.Millisecond)
	}
	err = s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE passed_at = 0 AND attempts = 1)
		FROM triplets WHERE first_seen >= $1 AND first_seen < $2`, ms(from), ms(to)).Scan(&r.Greylisted, &r.NeverRetried)
	if err != nil {
		return r, fmt.Errorf("pgstore: retries: %w", s.result(err))
	}
	s.result(nil)
	return r, nil
}

// Ping implements greylist.Pinger: one round trip to the server within
// the store's operation bound.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `SELECT 1`); err != nil {
		return fmt.Errorf("pgstore: ping: %w", s.result(err))
	}
	s.result(nil)
	return nil
}
