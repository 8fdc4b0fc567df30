package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greymilter/greymilter/greylist"
)

// purgeBatch bounds the rows one purge statement deletes, so that each
// holds few row locks for a short time.
const purgeBatch = 1000

// purgeTimeout bounds one purge statement: purges are not decisions and
// may wait longer than they.
const purgeTimeout = 30 * time.Second

// Purge implements greylist.Store. One host purges at a time: while another
// holds the purge lock this one does nothing. Rows that decisions have
// locked are skipped, to go at the next purge.
func (s *Store) Purge(ctx context.Context, rules greylist.Rules, now time.Time) (greylist.PurgeStats, error) {
	var st greylist.PurgeStats
	// What was touched before the purge is not purged.
	flushCtx, cancel := s.bound(ctx)
	s.flushTouches(flushCtx)
	cancel()
	// Nor is what was purged answered from the cache.
	if s.passed != nil {
		s.passed.Purge()
		s.clients.Purge()
	}
	lockCtx, cancel := s.bound(ctx)
	conn, err := s.pool.Acquire(lockCtx)
	if err != nil {
		cancel()
		return st, fmt.Errorf("pgstore: purge: %w", s.result(err))
	}
	var mine bool
	err = conn.QueryRow(lockCtx, `SELECT pg_try_advisory_lock($1)`, lockPurge).Scan(&mine)
	cancel()
	if err != nil {
		conn.Release()
		return st, fmt.Errorf("pgstore: purge lock: %w", s.result(err))
	}
	if !mine {
		conn.Release()
		s.log.Debug("purge skipped: another host is purging")
		return st, nil
	}
	defer func() {
		ctx, cancel := s.bound(context.Background())
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, lockPurge); err != nil {
			// The lock goes with the session.
			conn.Conn().Close(ctx)
		}
		conn.Release()
	}()

	// A step deletes one batch per statement and returns how many rows
	// went, and how many of them had been tried once only.
	type step struct {
		count, once *int
		query       string
		arg         int64
	}
	var steps []step
	if rules.MaxAge > 0 {
		old := ms(now.Add(-rules.MaxAge))
		steps = append(steps,
			step{&st.Triplets, nil, `DELETE FROM triplets WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM triplets WHERE last_seen < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`, old},
			step{&st.Clients, nil, `DELETE FROM clients WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM clients WHERE last_seen < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`, old})
	}
	if rules.PurgeUnverified > 0 {
		steps = append(steps, step{&st.Unverified, &st.NeverRetried, `DELETE FROM triplets WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM triplets WHERE passed_at = 0 AND first_seen < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))
			RETURNING attempts`,
			ms(now.Add(-rules.PurgeUnverified))})
	}
	steps = append(steps, step{new(int), nil, `DELETE FROM decision_counts WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM decision_counts WHERE hour < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`,
		now.Add(-greylist.CountsMaxAge).Unix() / 3600})
	// Expired runtime whitelist entries no longer match; hosts' copies
	// drop them at their next refresh.
	steps = append(steps, step{new(int), nil, `DELETE FROM whitelist WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM whitelist WHERE expires != 0 AND expires < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`, ms(now)})
	for _, step := range steps {
		for {
			bctx, cancel := context.WithTimeout(ctx, purgeTimeout)
			n, err := purgeOne(bctx, conn.Conn(), step.query, step.arg, step.once)
			cancel()
			if err != nil {
				return st, fmt.Errorf("pgstore: purge: %w", s.result(err))
			}
			*step.count += n
			if n < purgeBatch {
				break
			}
		}
	}
	return st, nil
}

// purgeOne runs one batch of a purge step and returns the rows deleted;
// when once is given, the query returns each row's attempts and once
// grows by the rows tried only once.
func purgeOne(ctx context.Context, conn *pgx.Conn, query string, arg int64, once *int) (int, error) {
	if once == nil {
		tag, err := conn.Exec(ctx, query, arg, purgeBatch)
		return int(tag.RowsAffected()), err
	}
	rows, err := conn.Query(ctx, query, arg, purgeBatch)
	if err != nil {
		return 0, err
	}
	attempts, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, err
	}
	for _, a := range attempts {
		if a == 1 {
			*once++
		}
	}
	return len(attempts), nil
}
