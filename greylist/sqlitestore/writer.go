package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

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
}

// writer runs every write, batching what is queued into one transaction.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*op, 0, maxBatch)
	last := 0 // size of the previous batch: how many to wait for
	wait := time.NewTimer(groupWait)
	wait.Stop()
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case t := <-s.touch:
			batch = append(batch[:0], s.touchOp(t))
		case <-s.quit:
			s.drain()
			return
		}
		batch = s.gather(batch, last, wait, groupWait)
		last = len(batch)
		s.commit(batch)
	}
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
// operation fails alone.
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
	err := s.runTx(live)
	if err == nil || len(live) == 1 {
		for _, o := range live {
			o.reply(err)
		}
		return
	}
	for _, o := range live {
		o.reply(s.runTx([]*op{o}))
	}
}

// runTx runs ops in one transaction. The writer's connection is its own:
// BEGIN and COMMIT go to it directly, without database/sql's Tx, which
// starts a goroutine per transaction to watch its context.
func (s *Store) runTx(ops []*op) error {
	s.pending = s.pending[:0]
	clear(s.overlay)
	clear(s.clientOverlay)
	if _, err := s.begin.Exec(); err != nil {
		return fmt.Errorf("greylist: begin: %w", err)
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
	// The queue has room nearly always: only a full one waits on ctx,
	// whose Done may cost a timer.
	select {
	case s.ops <- o:
		s.mu.RUnlock()
	default:
		select {
		case s.ops <- o:
			s.mu.RUnlock()
		case <-ctx.Done():
			s.mu.RUnlock()
			return ctx.Err()
		}
	}
	// Once queued the operation is waited for even past the context's
	// end: its result must not be lost half-way, and the batch is quick.
	return <-o.err
}
