// Package sqlitestore is greymilter's embedded default store: an SQLite
// file (or :memory:) written by one goroutine with group commit, and read
// through an in-memory index of every triplet and client.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// Store is a greylist.Store in an SQLite database file (or in memory).
//
// Every write goes through one writing connection, used by one goroutine
// at a time. The writer goroutine takes all the operations waiting and
// runs them in one transaction (group commit), so that many concurrent
// decisions cost one commit; a lone write finding it idle commits in its
// own goroutine instead (runAlone). The database runs in WAL mode with synchronous=NORMAL: a
// committed transaction survives the process being killed.
type Store struct {
	path string
	log  *slog.Logger

	w       *sql.DB                // the pool of the one writing connection
	wc      *sql.Conn              // that connection, held by the writer goroutine; reopened after faults
	r       atomic.Pointer[sql.DB] // readers of a file database; nil for :memory:
	ops     chan *op
	touch   chan touchOp
	control chan func()   // run by the writer between batches
	wake    chan struct{} // tells the writer a fault episode began in runAlone
	quit    chan struct{}
	done    chan struct{}

	// writing is held by whoever runs a batch: the writer goroutine, or a
	// caller that found it idle (runAlone). It guards the writer's state:
	// wc and its statements, health, pending and the overlays.
	writing sync.Mutex
	// lastBatch is the size of the writer's last batch: above one, the
	// load is for the writer to batch.
	lastBatch atomic.Int32
	// handed counts the operations handed to the writer goroutine and not
	// answered yet (touches included); runAlone waits its turn behind them.
	handed atomic.Int64
	// health is the record of write faults, kept by the writer.
	health health
	// salvage is a damaged database moved aside by --db-recover, whose
	// readable rows go into the fresh one.
	salvage string
	// held is the database file, held open to learn whether it was
	// deleted (watchFile; watchDone is closed when that ended).
	fileMu    sync.Mutex
	held      *os.File
	watchDone chan struct{}
	// ck is the checkpointer's connection (opened as needed).
	ckMu sync.Mutex
	ck   *sql.DB

	// mu guards closed: senders hold it shared while they queue, so that
	// Close, which takes it exclusively, knows nothing is queued after it.
	mu     sync.RWMutex
	closed bool

	checkpointDone chan struct{} // closed when the checkpointer ended; nil for :memory:

	// ix answers every read once filled; fillDone is closed when the
	// fill ended, stopFill cuts it short at Close.
	ix       *index
	fillDone chan struct{}
	stopFill context.CancelFunc
	// pending are the index changes of the transaction under way, and
	// overlay its triplets, for a second operation on the same triplet in
	// one batch. Only the writer goroutine touches them.
	pending       []change
	overlay       map[uint64]memRecord
	clientOverlay map[string]greylist.ClientRecord

	admin adminState // admin.go

	// Statements prepared on wc, for the writer.
	begin, commitTx, rollbackTx                                           *sql.Stmt
	selTriplet, upTriplet, selClient, upClient, touchTriplet, touchClient *sql.Stmt
}

type touchOp struct {
	key greylist.Key
	now time.Time
}

// Queries the writer prepares once, and readers run as they come (while
// the index fills).
const (
	selTripletSQL = `SELECT first_seen, last_seen, passed_at, attempts FROM triplets WHERE client = ? AND sender = ? AND recipient = ?`
	selClientSQL  = `SELECT passes, last_seen FROM clients WHERE client = ?`
)

func (s *Store) prepare() error {
	stmts := []struct {
		dst  **sql.Stmt
		text string
	}{
		// Prepared like the rest: parsed once, not at every batch.
		{&s.begin, "BEGIN IMMEDIATE"},
		{&s.commitTx, "COMMIT"},
		{&s.rollbackTx, "ROLLBACK"},
		{&s.selTriplet, selTripletSQL},
		{&s.upTriplet, `INSERT INTO triplets (client, sender, recipient, first_seen, last_seen, passed_at, attempts)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (client, sender, recipient) DO UPDATE SET
			first_seen = excluded.first_seen, last_seen = excluded.last_seen,
			passed_at = excluded.passed_at, attempts = excluded.attempts`},
		{&s.upClient, `INSERT INTO clients (client, passes, last_seen) VALUES (?, 1, ?)
			ON CONFLICT (client) DO UPDATE SET passes = passes + 1, last_seen = excluded.last_seen`},
		{&s.selClient, selClientSQL},
		{&s.touchTriplet, `UPDATE triplets SET last_seen = ? WHERE client = ? AND sender = ? AND recipient = ? AND last_seen < ?1
			RETURNING first_seen, last_seen, passed_at, attempts`},
		{&s.touchClient, `UPDATE clients SET last_seen = ? WHERE client = ? AND last_seen < ?1 RETURNING passes, last_seen`},
	}
	for _, st := range stmts {
		p, err := s.wc.PrepareContext(context.Background(), st.text)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", st.text, err)
		}
		*st.dst = p
	}
	return nil
}

// querier runs read queries: *sql.DB and *sql.Conn are ones.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// read runs fn with a connection that can read: one of the readers' pool
// of a file database; for ":memory:", whose only connection the writer
// holds, the writer's, between its other operations.
func (s *Store) read(ctx context.Context, fn func(q querier) error) error {
	if r := s.r.Load(); r != nil {
		return fn(r)
	}
	return s.do(ctx, func(c *sql.Conn) error { return fn(c) })
}

// currentClient reads a client in the writer, as current does a triplet;
// a client never seen has zero passes.
func (s *Store) currentClient(client string) (greylist.ClientRecord, error) {
	if c, ok := s.clientOverlay[client]; ok {
		if c.Passes < 0 {
			return greylist.ClientRecord{}, nil
		}
		return c, nil
	}
	if c, _, sure := s.ix.client(client); sure {
		return c, nil
	}
	var c greylist.ClientRecord
	var last int64
	err := s.selClient.QueryRow(client).Scan(&c.Passes, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return greylist.ClientRecord{}, nil
	}
	c.LastSeen = fromMS(last)
	return c, err
}

// current reads a triplet in the writer: this transaction's own changes
// first, then the index, then (while the index fills) the database.
func (s *Store) current(key greylist.Key, h uint64) (greylist.Record, bool, error) {
	if m, ok := s.overlay[h]; ok {
		if m.attempts < 0 {
			return greylist.Record{}, false, nil
		}
		return m.record(), true, nil
	}
	if m, found, sure := s.ix.triplet(h); sure {
		if !found {
			return greylist.Record{}, false, nil
		}
		return m.record(), true, nil
	}
	return scanRecord(s.selTriplet.QueryRow(key.Client, key.Sender, key.Recipient))
}

// Attempt implements Store.
func (s *Store) Attempt(ctx context.Context, key greylist.Key, rules greylist.Rules, now time.Time) (greylist.Result, error) {
	var res greylist.Result
	err := s.do(ctx, func(*sql.Conn) error {
		h := s.ix.hash(key)
		rec, found, err := s.current(key, h)
		if err != nil {
			return fmt.Errorf("greylist: read triplet: %w", err)
		}
		res = rules.Apply(rec, found, now)
		r := res.Record
		if _, err := s.upTriplet.Exec(key.Client, key.Sender, key.Recipient,
			ms(r.FirstSeen), ms(r.LastSeen), ms(r.PassedAt), r.Attempts); err != nil {
			return fmt.Errorf("greylist: write triplet: %w", err)
		}
		s.stage(change{h: h, rec: toMem(r)})
		if res.Outcome == greylist.Passed && !rules.NoClientPasses {
			c, err := s.currentClient(key.Client)
			if err != nil {
				return fmt.Errorf("greylist: read client: %w", err)
			}
			if _, err := s.upClient.Exec(key.Client, ms(now)); err != nil {
				return fmt.Errorf("greylist: write client: %w", err)
			}
			c.Passes++
			c.LastSeen = fromMS(ms(now))
			s.stage(change{client: key.Client, crec: c})
		}
		return nil
	})
	return res, err
}

// Lookup implements Store.
func (s *Store) Lookup(ctx context.Context, key greylist.Key) (greylist.Record, bool, error) {
	if m, found, sure := s.ix.triplet(s.ix.hash(key)); sure {
		return m.record(), found, nil
	}
	var rec greylist.Record
	var found bool
	err := s.read(ctx, func(q querier) error {
		var err error
		rec, found, err = scanRecord(q.QueryRowContext(ctx, selTripletSQL, key.Client, key.Sender, key.Recipient))
		return err
	})
	if err != nil {
		return greylist.Record{}, false, fmt.Errorf("greylist: lookup: %w", err)
	}
	return rec, found, nil
}

// Client implements Store.
func (s *Store) Client(ctx context.Context, client string) (greylist.ClientRecord, bool, error) {
	if c, found, sure := s.ix.client(client); sure {
		return c, found, nil
	}
	var passes int
	var last int64
	err := s.read(ctx, func(q querier) error {
		return q.QueryRowContext(ctx, selClientSQL, client).Scan(&passes, &last)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return greylist.ClientRecord{}, false, nil
	}
	if err != nil {
		return greylist.ClientRecord{}, false, fmt.Errorf("greylist: client lookup: %w", err)
	}
	return greylist.ClientRecord{Passes: passes, LastSeen: fromMS(last)}, true, nil
}

// Touch implements Store. When the queue is full the touch is dropped: it
// will come again with the next mail of that triplet.
func (s *Store) Touch(key greylist.Key, now time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	s.handed.Add(1)
	select {
	case s.touch <- touchOp{key, now}:
	default:
		s.handed.Add(-1)
	}
}

func (s *Store) touchOp(t touchOp) *op {
	return &op{handed: &s.handed, run: func(*sql.Conn) error {
		now := ms(t.now)
		var first, last, passed int64
		var attempts int32
		err := s.touchTriplet.QueryRow(now, t.key.Client, t.key.Sender, t.key.Recipient).Scan(&first, &last, &passed, &attempts)
		switch {
		case err == nil:
			s.stage(change{h: s.ix.hash(t.key), rec: fromDB(first, last, passed, attempts)})
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("greylist: touch triplet: %w", err)
		}
		var c greylist.ClientRecord
		err = s.touchClient.QueryRow(now, t.key.Client).Scan(&c.Passes, &last)
		switch {
		case err == nil:
			c.LastSeen = fromMS(last)
			s.stage(change{client: t.key.Client, crec: c})
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("greylist: touch client: %w", err)
		}
		return nil
	}}
}

// Close implements Store: queued operations are committed first.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.stopFill != nil {
		s.stopFill()
	}
	<-s.fillDone
	close(s.quit)
	<-s.done
	if s.checkpointDone != nil {
		<-s.checkpointDone
	}
	if s.watchDone != nil {
		<-s.watchDone
		s.held.Close()
	}
	return s.closeDBs()
}

type rowScanner interface{ Scan(dest ...any) error }

func scanRecord(row rowScanner) (greylist.Record, bool, error) {
	var first, last, passed int64
	var attempts int
	err := row.Scan(&first, &last, &passed, &attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return greylist.Record{}, false, nil
	}
	if err != nil {
		return greylist.Record{}, false, err
	}
	return greylist.Record{FirstSeen: fromMS(first), LastSeen: fromMS(last), PassedAt: fromMS(passed), Attempts: attempts}, true, nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}
