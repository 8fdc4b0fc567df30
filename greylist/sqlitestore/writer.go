package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/greymilter/greymilter/internal/loglevel"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/greymilter/greymilter/greylist"
)

// maxBatch bounds how many operations share one write transaction.
const maxBatch = 256

// op runs in the writer, inside the transaction of its batch, on the
// writer's connection.
type op struct {
	run func(c *sql.Conn) error
	err chan error // nil for fire-and-forget operations
	ctx context.Context
	// handed, for an operation handed to the writer goroutine, is the
	// store's count of those not answered yet (Store.handed).
	handed *atomic.Int64
}

// writer runs every write, batching what is queued into one transaction.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*op, 0, maxBatch)
	last := 0 // size of the previous batch: how many to wait for
	wait := time.NewTimer(groupWait)
	wait.Stop()
	for {
		s.writing.Lock()
		retry := s.retryTimer()
		s.writing.Unlock()
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case t := <-s.touch:
			batch = append(batch[:0], s.touchOp(t))
		case fn := <-s.control:
			s.writing.Lock()
			fn()
			s.writing.Unlock()
			continue
		case <-retry:
			s.writing.Lock()
			s.retry()
			s.writing.Unlock()
			continue
		case <-s.wake:
			continue // a batch run by a caller started a fault episode
		case <-s.quit:
			s.writing.Lock()
			s.drain()
			s.writing.Unlock()
			return
		}
		s.writing.Lock()
		batch = s.gather(batch, last, wait, groupWait)
		last = len(batch)
		s.lastBatch.Store(int32(last))
		s.commit(batch)
		s.writing.Unlock()
	}
}

// queued tells whether operations handed to the writer are not answered
// yet: those come first (a touch made before a purge is purged with its
// new time), so a write cannot run alone past them.
func (s *Store) queued() bool { return s.handed.Load() > 0 }

// runAlone commits o at once in the calling goroutine if the writer is
// idle and nothing is queued, and reports whether it did. A lone decision
// (concurrency 1, or a quiet moment) then costs no hand-over to the
// writer goroutine and back, two wake-ups of a parked thread. Under load
// the writer is busy or operations are queued, and they go to it, to be
// committed together: once the writer's last batch held more than one,
// callers leave the writing to it until the load falls back to one at a
// time. During a fault episode every write goes to the writer, which
// keeps the retry schedule.
func (s *Store) runAlone(o *op) bool {
	if s.lastBatch.Load() > 1 || s.queued() || !s.writing.TryLock() {
		return false
	}
	defer s.writing.Unlock()
	if s.health.cause != nil || s.queued() {
		return false
	}
	s.commit([]*op{o})
	if s.health.cause != nil {
		// The writer must learn of the episode to retry on schedule.
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// drain runs what was queued before Close.
func (s *Store) drain() {
	for {
		select {
		case o := <-s.ops:
			s.commit([]*op{o})
		case t := <-s.touch:
			s.commit([]*op{s.touchOp(t)})
		default:
			return
		}
	}
}

// commit runs a batch in one transaction. If any operation fails the batch
// is rolled back and each operation is run again on its own, so that one bad
// operation fails alone. A fault of the database (not of an operation)
// fails the whole batch and starts or continues a fault episode (heal.go).
func (s *Store) commit(batch []*op) {
	live := batch[:0:0]
	for _, o := range batch {
		if o.ctx != nil && o.ctx.Err() != nil {
			o.reply(o.ctx.Err())
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	if err := s.ready(); err != nil {
		s.failAll(live, err)
		return
	}
	start := time.Now()
	live, err := s.beginWait(live)
	if err != nil {
		s.failAll(live, err)
		return
	}
	if len(live) == 0 {
		return // all answered while the lock was held elsewhere
	}
	err = s.runTx(live, true)
	if s.log.Enabled(context.Background(), loglevel.Trace) {
		s.log.Log(context.Background(), loglevel.Trace, "sql transaction", "operations", len(live), "took", time.Since(start), "err", err)
	}
	if fault, reopen := faultClass(err); fault {
		s.writeFailed(err, reopen)
		s.failAll(live, err)
		return
	}
	if err == nil {
		s.healed()
	}
	if err == nil || len(live) == 1 {
		for _, o := range live {
			o.reply(err)
		}
		return
	}
	for _, o := range live {
		o.reply(s.runTx([]*op{o}, false))
	}
}

// ready tells whether a batch may be tried: during a fault episode that
// needs the connection reopened, only once its retry is due, and then
// after a successful retry.
func (s *Store) ready() error {
	if s.health.cause == nil {
		return nil // the usual case: no clock read
	}
	if err := s.failFast(time.Now()); err != nil {
		return err
	}
	if h := &s.health; h.cause != nil && h.reopen && !s.retry() {
		return fmt.Errorf("%w: %w", ErrUnavailable, h.cause)
	}
	return nil
}

// failAll answers every operation of a batch that could not run with err.
func (s *Store) failAll(ops []*op, err error) {
	for _, o := range ops {
		o.reply(err)
	}
}

// beginWait begins the batch's transaction. While another process holds
// the write lock it tries again, in slices of busyWait, taking in what is
// queued meanwhile, and fails each operation whose deadline is near with
// a "locked" error, so that its decision is answered in time. It returns
// the operations still waiting, once the transaction has begun.
func (s *Store) beginWait(ops []*op) ([]*op, error) {
	for {
		_, err := s.begin.Exec()
		if err == nil {
			return ops, nil
		}
		if !isBusy(err) {
			if fault, reopen := faultClass(err); fault {
				s.writeFailed(err, reopen)
			}
			return ops, fmt.Errorf("greylist: begin: %w", err)
		}
		select {
		case <-s.quit:
			return ops, fmt.Errorf("greylist: begin: %w", err)
		default:
		}
		now := time.Now()
		keep := ops[:0]
		for _, o := range ops {
			if o.ctx == nil {
				keep = append(keep, o)
				continue
			}
			if dl, ok := o.ctx.Deadline(); (ok && dl.Sub(now) < answerMargin) || o.ctx.Err() != nil {
				s.writeFailed(err, false)
				o.reply(fmt.Errorf("greylist: the database is locked by another process: %w", err))
				continue
			}
			keep = append(keep, o)
		}
		ops = keep
		if len(ops) == 0 {
			return nil, nil
		}
		ops = s.takeQueued(ops)
	}
}

// takeQueued adds what is queued to ops, without waiting.
func (s *Store) takeQueued(ops []*op) []*op {
	for {
		select {
		case o := <-s.ops:
			ops = append(ops, o)
		case t := <-s.touch:
			ops = append(ops, s.touchOp(t))
		default:
			return ops
		}
	}
}

// runTx runs ops in one transaction, begun already if begun, else here.
// The writer's connection is its own: BEGIN and COMMIT go to it directly,
// without database/sql's Tx, which starts a goroutine per transaction to
// watch its context.
func (s *Store) runTx(ops []*op, begun bool) error {
	s.pending = s.pending[:0]
	clear(s.overlay)
	clear(s.clientOverlay)
	if !begun {
		if _, err := s.begin.Exec(); err != nil {
			return fmt.Errorf("greylist: begin: %w", err)
		}
	}
	for _, o := range ops {
		if err := o.run(s.wc); err != nil {
			s.rollback()
			return err
		}
	}
	if _, err := s.commitTx.Exec(); err != nil {
		s.rollback()
		return fmt.Errorf("greylist: commit: %w", err)
	}
	// Readers learn of the changes only once they are committed.
	s.ix.apply(s.pending)
	return nil
}

// rollback ends a failed transaction. A COMMIT that failed may already
// have rolled it back, and then ROLLBACK fails harmlessly.
func (s *Store) rollback() {
	s.rollbackTx.Exec()
}

// stage records a change of the transaction under way.
func (s *Store) stage(c change) {
	s.pending = append(s.pending, c)
	switch {
	case c.client != "" && c.deleted:
		s.clientOverlay[c.client] = greylist.ClientRecord{Passes: -1}
	case c.client != "":
		s.clientOverlay[c.client] = c.crec
	case c.deleted:
		s.overlay[c.h] = memRecord{attempts: -1}
	default:
		s.overlay[c.h] = c.rec
	}
}

func (o *op) reply(err error) {
	if o.handed != nil {
		o.handed.Add(-1)
	}
	if o.err != nil {
		o.err <- err
	}
}

// do queues fn for the writer and waits until it is committed.
func (s *Store) do(ctx context.Context, fn func(c *sql.Conn) error) error {
	o := &op{run: fn, err: make(chan error, 1), ctx: ctx}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return greylist.ErrClosed
	}
	if s.runAlone(o) {
		s.mu.RUnlock()
		return <-o.err
	}
	// The queue has room nearly always: only a full one waits on ctx,
	// whose Done may cost a timer.
	o.handed = &s.handed
	s.handed.Add(1)
	select {
	case s.ops <- o:
		s.mu.RUnlock()
	default:
		select {
		case s.ops <- o:
			s.mu.RUnlock()
		case <-ctx.Done():
			s.handed.Add(-1)
			s.mu.RUnlock()
			return ctx.Err()
		}
	}
	// Once queued the operation is waited for even past the context's
	// end: its result must not be lost half-way, and the batch is quick.
	return <-o.err
}
