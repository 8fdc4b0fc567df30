package pgstore

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/greymilter/greymilter/internal/loglevel"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/greymilter/greymilter/greylist"
)

// Decisions' statements go to the server in batches, as SQLite's writer
// commits in groups: each batcher takes every statement queued, sends them
// in one pipeline, and the server runs them as one implicit transaction,
// with one commit (one WAL flush) for all. Many concurrent decisions then
// cost a few round trips and commits, not one each. Reads and writes are
// batched apart, so that a read never waits for a commit.
const (
	// batchers is how many batches of each kind may be under way at once.
	batchers = 4
	// maxBatch bounds the statements of one batch.
	maxBatch = 128
)

// stmt is one statement of a batch, with its reply.
type stmt struct {
	write bool
	key   greylist.Key // batches lock rows in key order: no deadlock between hosts
	sql   string
	args  []any
	// row reads the answer of a query; nil for a statement whose rows
	// affected are its answer.
	row  func(pgx.Row) error
	n    int64
	err  error
	done chan struct{}
}

// run queues st for a batcher and waits for its answer or for ctx.
func (s *Store) run(ctx context.Context, st *stmt) error {
	st.done = make(chan struct{})
	queue := s.reads
	if st.write {
		queue = s.writes
	}
	select {
	case queue <- st:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return greylist.ErrClosed
	}
	select {
	case <-st.done:
		return st.err
	case <-ctx.Done():
		// The batch may still commit: as with any lost answer, the
		// sender is told to retry later and the rules see it again.
		return ctx.Err()
	}
}

// batcher sends the statements queued in stmts in batches until Close,
// and then those still queued.
func (s *Store) batcher(stmts chan *stmt) {
	defer s.batchersDone.Done()
	batch := make([]*stmt, 0, maxBatch)
	for {
		select {
		case st := <-stmts:
			batch = append(batch[:0], st)
		case <-s.quit:
			for {
				select {
				case st := <-stmts:
					s.send([]*stmt{st})
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case st := <-stmts:
				batch = append(batch, st)
			default:
				break fill
			}
		}
		s.send(batch)
	}
}

// send runs batch in one pipeline. If it fails for another reason than the
// database being unreachable, each statement is run again on its own, so
// that one bad statement fails alone.
func (s *Store) send(batch []*stmt) {
	slices.SortStableFunc(batch, func(a, b *stmt) int {
		return cmp.Or(cmp.Compare(a.key.Client, b.key.Client), cmp.Compare(a.key.Sender, b.key.Sender), cmp.Compare(a.key.Recipient, b.key.Recipient))
	})
	err := s.sendBatch(batch)
	if err != nil && len(batch) > 1 && !unavailable(err) {
		for _, st := range batch {
			st.err = s.sendBatch([]*stmt{st})
			close(st.done)
		}
		return
	}
	for _, st := range batch {
		if err != nil {
			st.err = err
		}
		close(st.done)
	}
}

func (s *Store) sendBatch(batch []*stmt) error {
	ctx, cancel := s.bound(context.Background())
	defer cancel()
	var b pgx.Batch
	for _, st := range batch {
		q := b.Queue(st.sql, st.args...)
		if st.row != nil {
			q.QueryRow(st.row)
		} else {
			q.Exec(func(ct pgconn.CommandTag) error {
				st.n = ct.RowsAffected()
				return nil
			})
		}
	}
	start := time.Now()
	err := s.pool.SendBatch(ctx, &b).Close()
	if s.log.Enabled(ctx, loglevel.Trace) {
		s.log.Log(ctx, loglevel.Trace, "sql batch", "statements", len(batch), "took", time.Since(start), "err", err)
	}
	return err
}
