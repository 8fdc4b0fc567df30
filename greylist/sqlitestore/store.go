package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/greymilter/greymilter/greylist"
)

// maxBatch bounds how many operations share one write transaction.
const maxBatch = 256

// purgeBatch bounds how many rows one purge transaction deletes, so that
// decisions queued behind it wait little.
const purgeBatch = 2000

// migrations are applied in order; PRAGMA user_version counts those done.
var migrations = []string{
	`CREATE TABLE triplets (
		client     TEXT NOT NULL,
		sender     TEXT NOT NULL,
		recipient  TEXT NOT NULL,
		first_seen INTEGER NOT NULL, -- unix milliseconds
		last_seen  INTEGER NOT NULL,
		passed_at  INTEGER NOT NULL DEFAULT 0,
		attempts   INTEGER NOT NULL DEFAULT 1,
		PRIMARY KEY (client, sender, recipient)
	) WITHOUT ROWID;
	CREATE INDEX triplets_last_seen ON triplets (last_seen);
	CREATE INDEX triplets_unverified ON triplets (first_seen) WHERE passed_at = 0;
	CREATE TABLE clients (
		client    TEXT PRIMARY KEY,
		passes    INTEGER NOT NULL,
		last_seen INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX clients_last_seen ON clients (last_seen);`,
	`CREATE TABLE decision_counts (
		hour   INTEGER NOT NULL, -- unix hour
		action TEXT NOT NULL,
		reason TEXT NOT NULL,
		n      INTEGER NOT NULL,
		PRIMARY KEY (hour, action, reason)
	) WITHOUT ROWID;`,
}

// Store is a greylist.Store in an SQLite database file (or in memory).
//
// Every write goes through one goroutine that owns the only writing
// connection. It takes all the operations waiting and runs them in one
// transaction (group commit), so that many concurrent decisions cost one
// commit. The database runs in WAL mode with synchronous=NORMAL: a
// committed transaction survives the process being killed.
type Store struct {
	w     *sql.DB   // the pool of the one writing connection
	wc    *sql.Conn // that connection, held by the writer goroutine
	r     *sql.DB   // readers of a file database; nil for :memory:
	ops   chan *op
	touch chan touchOp
	quit  chan struct{}
	done  chan struct{}

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

	// Statements prepared on wc, for the writer.
	begin, commitTx, rollbackTx                                           *sql.Stmt
	selTriplet, upTriplet, selClient, upClient, touchTriplet, touchClient *sql.Stmt
}

// op runs in the writer, inside the transaction of its batch, on the
// writer's connection.
type op struct {
	run func(c *sql.Conn) error
	err chan error // nil for fire-and-forget operations
	ctx context.Context
}

type touchOp struct {
	key greylist.Key
	now time.Time
}

// Open opens (creating and migrating as needed) the database at path;
// ":memory:" keeps everything in memory.
func Open(path string) (*Store, error) {
	memory := path == ":memory:"
	params := url.Values{
		"_busy_timeout": {"5000"},
		"_txlock":       {"immediate"},
	}
	var dsn string
	if memory {
		dsn = "file::memory:?" + params.Encode()
	} else {
		params.Set("_journal_mode", "WAL")
		params.Set("_synchronous", "NORMAL")
		dsn = "file:" + escapePath(path) + "?" + params.Encode()
	}
	w, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("greylist: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if !memory {
		if err := setPageSize(w, pageSize); err != nil {
			w.Close()
			return nil, fmt.Errorf("greylist: %s: %w", path, err)
		}
	}
	if err := migrate(w); err != nil {
		w.Close()
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	wc, err := w.Conn(context.Background())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	s := &Store{
		w: w, wc: wc,
		ops:   make(chan *op, 4*maxBatch),
		touch: make(chan touchOp, 4096),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if !memory {
		ro := url.Values{"_busy_timeout": {"5000"}, "_query_only": {"true"}}
		r, err := sql.Open("sqlite3", "file:"+escapePath(path)+"?"+ro.Encode())
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("greylist: open %s for reading: %w", path, err)
		}
		r.SetMaxOpenConns(8)
		r.SetMaxIdleConns(8)
		s.r = r
		// Checkpoints copy the WAL into the database and fsync it; run in
		// the writer they would hold every decision queued behind them.
		// A separate connection does them instead, without blocking it.
		if _, err := wc.ExecContext(context.Background(), "PRAGMA wal_autocheckpoint = 0"); err != nil {
			s.closeDBs()
			return nil, fmt.Errorf("greylist: %s: %w", path, err)
		}
		s.checkpointDone = make(chan struct{})
		go s.checkpointer(path)
	}
	if err := s.prepare(); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	s.ix, s.fillDone = newIndex(), make(chan struct{})
	s.overlay, s.clientOverlay = make(map[uint64]memRecord), make(map[string]greylist.ClientRecord)
	go s.writer()
	if memory {
		// A new in-memory database is empty: nothing to read.
		s.ix.ready.Store(true)
		close(s.fillDone)
	} else {
		var fillCtx context.Context
		fillCtx, s.stopFill = context.WithCancel(context.Background())
		go func() {
			defer close(s.fillDone)
			start := time.Now()
			if err := s.ix.fill(fillCtx, s.r); err != nil && fillCtx.Err() == nil {
				// The database still answers what the index cannot.
				slog.Error("greylist: filling the in-memory index failed; reads go to the database", "db", path, "err", err)
				return
			}
			slog.Debug("greylist: in-memory index filled", "db", path, "took", time.Since(start))
		}()
	}
	return s, nil
}

func escapePath(p string) string {
	return strings.NewReplacer("?", "%3f", "#", "%23").Replace(p)
}

// pageSize is the page size of a new database file. Every commit writes
// each page it changed to the WAL, and a decision changes about two pages
// of B-trees keyed at random: 2 KiB pages halve what that costs against
// SQLite's 4 KiB (policy decisions/s +12% in make bench), and smaller
// ones gain nothing more.
const pageSize = 2048

// setPageSize gives a database that has no table yet the page size n. A
// file already in WAL mode keeps its page size, so it leaves WAL mode for
// the change and goes back; an existing database is left as it is.
func setPageSize(db *sql.DB, n int) error {
	var tables int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return fmt.Errorf("reading schema: %w", err)
	}
	if tables > 0 {
		return nil
	}
	for _, q := range []string{"PRAGMA journal_mode = DELETE", fmt.Sprintf("PRAGMA page_size = %d", n), "VACUUM", "PRAGMA journal_mode = WAL"} {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("setting page size %d: %s: %w", n, q, err)
		}
	}
	return nil
}

func migrate(db *sql.DB) error {
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this greymilter knows (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
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
	if s.r != nil {
		return fn(s.r)
	}
	return s.do(ctx, func(c *sql.Conn) error { return fn(c) })
}

// checkpointInterval is how often the WAL is copied into the database.
const checkpointInterval = 200 * time.Millisecond

// checkpointer runs passive checkpoints until the store closes, and a last
// full one then, so that a clean shutdown leaves a small WAL.
func (s *Store) checkpointer(path string) {
	defer close(s.checkpointDone)
	db, err := sql.Open("sqlite3", "file:"+escapePath(path)+"?_busy_timeout=5000")
	if err != nil {
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			<-s.done // the writer has committed its last batch
			db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
			return
		case <-t.C:
			// A failure leaves the frames in the WAL for the next try.
			db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// writer runs every write, batching what is queued into one transaction.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*op, 0, maxBatch)
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
	fill:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			case t := <-s.touch:
				batch = append(batch, s.touchOp(t))
			default:
				break fill
			}
		}
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
	select {
	case s.touch <- touchOp{key, now}:
	default:
	}
}

func (s *Store) touchOp(t touchOp) *op {
	return &op{run: func(*sql.Conn) error {
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

// Purge implements Store.
func (s *Store) Purge(ctx context.Context, rules greylist.Rules, now time.Time) (greylist.PurgeStats, error) {
	var st greylist.PurgeStats
	old := ms(now.Add(-rules.MaxAge))
	// Each step deletes what its query returns, a batch at a time, and
	// tells the index which keys went.
	type purgeStep struct {
		count *int
		what  string // "triplets", "clients" or "" for rows the index does not hold
		query string
		arg   int64
	}
	limit := fmt.Sprint(purgeBatch)
	var steps []purgeStep
	if rules.MaxAge > 0 {
		steps = append(steps,
			purgeStep{&st.Triplets, "triplets", `DELETE FROM triplets WHERE (client, sender, recipient) IN
				(SELECT client, sender, recipient FROM triplets WHERE last_seen < ? LIMIT ` + limit + `)
				RETURNING client, sender, recipient`, old},
			purgeStep{&st.Clients, "clients", `DELETE FROM clients WHERE client IN
				(SELECT client FROM clients WHERE last_seen < ? LIMIT ` + limit + `) RETURNING client`, old})
	}
	steps = append(steps, purgeStep{new(int), "", `DELETE FROM decision_counts WHERE hour < ?`, now.Add(-greylist.CountsMaxAge).Unix() / 3600})
	if rules.PurgeUnverified > 0 {
		steps = append(steps, purgeStep{&st.Unverified, "triplets", `DELETE FROM triplets WHERE (client, sender, recipient) IN
			(SELECT client, sender, recipient FROM triplets WHERE passed_at = 0 AND first_seen < ? LIMIT ` + limit + `)
			RETURNING client, sender, recipient`,
			ms(now.Add(-rules.PurgeUnverified))})
	}
	for _, step := range steps {
		for {
			var n int
			err := s.do(ctx, func(c *sql.Conn) error {
				var err error
				n, err = s.purgeBatch(c, step.what, step.query, step.arg)
				if err != nil {
					return fmt.Errorf("greylist: purge: %w", err)
				}
				return nil
			})
			if err != nil {
				return st, err
			}
			*step.count += n
			if n < purgeBatch {
				break
			}
		}
	}
	return st, nil
}

// purgeBatch runs one purge query in the writer and stages the index
// deletions of what it returned.
func (s *Store) purgeBatch(c *sql.Conn, what, query string, arg int64) (int, error) {
	if what == "" {
		res, err := c.ExecContext(context.Background(), query, arg)
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		return int(n), err
	}
	rows, err := c.QueryContext(context.Background(), query, arg)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var k greylist.Key
		if what == "clients" {
			if err := rows.Scan(&k.Client); err != nil {
				return n, err
			}
			s.stage(change{client: k.Client, deleted: true})
		} else {
			if err := rows.Scan(&k.Client, &k.Sender, &k.Recipient); err != nil {
				return n, err
			}
			s.stage(change{h: s.ix.hash(k), deleted: true})
		}
		n++
	}
	return n, rows.Err()
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
	return s.closeDBs()
}

func (s *Store) closeDBs() error {
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.wc.Close(), s.w.Close())
	return errors.Join(errs...)
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
