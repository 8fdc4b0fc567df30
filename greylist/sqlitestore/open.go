package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/greymilter/greymilter/greylist"
)

// Options tune a store opened with OpenWith.
type Options struct {
	// Log receives the store's own messages (write faults, file checks);
	// slog.Default() when nil.
	Log *slog.Logger
	// WriteTest commits a throwaway write at start: a database that
	// cannot be written is then an error, not a surprise at the first
	// decision.
	WriteTest bool
	// Recover moves a damaged database aside and starts a fresh one with
	// what can still be read from it, instead of refusing to start.
	Recover bool
}

// Open opens (creating and migrating as needed) the database at path;
// ":memory:" keeps everything in memory.
func Open(path string) (*Store, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with options. A file database is checked before it is
// used: PRAGMA quick_check (a damaged one is an error wrapping
// greylist.ErrCorrupt, unless o.Recover), and with o.WriteTest a throwaway
// write (one that cannot be written is an error wrapping
// greylist.ErrUnwritable).
func OpenWith(path string, o Options) (*Store, error) {
	memory := path == ":memory:"
	s := &Store{
		path:    path,
		log:     o.Log,
		ops:     make(chan *op, 4*maxBatch),
		touch:   make(chan touchOp, 4096),
		control: make(chan func()),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if !memory {
		if err := s.checkFile(o.Recover); err != nil {
			return nil, err
		}
	}
	if err := s.openWriter(); err != nil {
		return nil, err
	}
	if !memory {
		if err := setPageSize(s.wc, pageSize); err != nil {
			s.closeDBs()
			return nil, classify(path, err)
		}
	}
	if err := migrate(s.wc); err != nil {
		s.closeDBs()
		return nil, classify(path, err)
	}
	if s.salvage != "" {
		if err := salvageFrom(s.wc, s.salvage, s.log); err != nil {
			s.log.Error("sqlitestore: --db-recover: could not read the damaged database; starting empty", "damaged", s.salvage, "err", err)
		}
	}
	if err := s.prepare(); err != nil {
		s.closeDBs()
		return nil, classify(path, err)
	}
	if !memory && o.WriteTest {
		if err := s.writeTest(); isBusy(err) {
			// Another process holds the write lock: a write fault that
			// heals when it lets go, not a reason to refuse to start.
			s.log.Warn("sqlitestore: another process holds the database's write lock at start; decisions that need a write wait for it until their deadline", "db", path)
		} else if err != nil {
			s.closeDBs()
			return nil, unwritable(path, err)
		}
	}
	if !memory {
		r, err := openReaders(path)
		if err != nil {
			s.closeDBs()
			return nil, err
		}
		s.r.Store(r)
		if err := s.hold(); err != nil {
			s.closeDBs()
			return nil, fmt.Errorf("greylist: %s: %w", path, err)
		}
		s.checkpointDone = make(chan struct{})
		go s.checkpointer()
		s.watchDone = make(chan struct{})
		go s.watchFile()
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
			if err := s.ix.fill(fillCtx, s.r.Load()); err != nil && fillCtx.Err() == nil {
				// The database still answers what the index cannot.
				s.log.Error("filling the in-memory index failed; reads go to the database", "db", path, "err", err)
				return
			}
			s.log.Debug("in-memory index filled", "db", path, "took", time.Since(start))
		}()
	}
	if err := s.loadWhitelist(context.Background()); err != nil {
		s.Close()
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	return s, nil
}

// writerDSN is the writer's connection string. Its busy timeout is short:
// the writer waits for a lock held by another process in slices of it,
// answering the decisions whose deadline comes first (beginWait).
func writerDSN(path string) string {
	params := url.Values{
		"_busy_timeout": {fmt.Sprint(busyWait.Milliseconds())},
		"_txlock":       {"immediate"},
	}
	if path == ":memory:" {
		return "file::memory:?" + params.Encode()
	}
	params.Set("_journal_mode", "WAL")
	params.Set("_synchronous", "NORMAL")
	return "file:" + escapePath(path) + "?" + params.Encode()
}

// openWriter opens the writer's connection; prepare readies its statements
// once the schema is there.
func (s *Store) openWriter() error {
	w, err := sql.Open("sqlite3", writerDSN(s.path))
	if err != nil {
		return fmt.Errorf("greylist: open %s: %w", s.path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	wc, err := w.Conn(context.Background())
	if err != nil {
		w.Close()
		return classify(s.path, err)
	}
	s.w, s.wc = w, wc
	if s.path != ":memory:" {
		// Checkpoints copy the WAL into the database and fsync it; run in
		// the writer they would hold every decision queued behind them.
		// A separate connection does them instead, without blocking it.
		if _, err := wc.ExecContext(context.Background(), "PRAGMA wal_autocheckpoint = 0"); err != nil {
			s.closeWriter()
			return classify(s.path, err)
		}
	}
	return nil
}

// reopenWriter replaces the writer's connection with a new one: a
// connection that met a read-only file stays read-only until reopened.
func (s *Store) reopenWriter() error {
	if s.path == ":memory:" {
		return nil // its only connection is the database
	}
	s.closeWriter()
	s.health.reopens.Add(1)
	s.closeCheckpointDB() // reopened by its next checkpoint
	if err := s.openWriter(); err != nil {
		return err
	}
	if err := s.prepare(); err != nil {
		s.closeWriter()
		return classify(s.path, err)
	}
	return nil
}

func (s *Store) closeWriter() {
	for _, st := range []**sql.Stmt{&s.begin, &s.commitTx, &s.rollbackTx, &s.selTriplet, &s.upTriplet, &s.selClient, &s.upClient, &s.touchTriplet, &s.touchClient} {
		if *st != nil {
			(*st).Close()
			*st = nil
		}
	}
	if s.wc != nil {
		s.wc.Close()
		s.wc = nil
	}
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
}

// writeTest commits a throwaway change (a row inserted and deleted): a
// database that cannot take it cannot take a decision either. The commit
// really writes to the WAL, so a full disk shows too.
func (s *Store) writeTest() error {
	ctx := context.Background()
	c := s.wc
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	for _, q := range []string{
		`INSERT OR REPLACE INTO decision_counts (hour, action, reason, n) VALUES (-1, 'write-test', '', 0)`,
		`DELETE FROM decision_counts WHERE hour = -1`,
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			c.ExecContext(ctx, "ROLLBACK")
			return err
		}
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		c.ExecContext(ctx, "ROLLBACK")
		return err
	}
	return nil
}

func openReaders(path string) (*sql.DB, error) {
	ro := url.Values{"_busy_timeout": {"5000"}, "_query_only": {"true"}}
	r, err := sql.Open("sqlite3", "file:"+escapePath(path)+"?"+ro.Encode())
	if err != nil {
		return nil, fmt.Errorf("greylist: open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	return r, nil
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
func setPageSize(db *sql.Conn, n int) error {
	ctx := context.Background()
	var tables int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return fmt.Errorf("reading schema: %w", err)
	}
	if tables > 0 {
		return nil
	}
	for _, q := range []string{"PRAGMA journal_mode = DELETE", fmt.Sprintf("PRAGMA page_size = %d", n), "VACUUM", "PRAGMA journal_mode = WAL"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("setting page size %d: %s: %w", n, q, err)
		}
	}
	return nil
}

// checkpointInterval is how often the WAL is copied into the database.
const checkpointInterval = 200 * time.Millisecond

// checkpointer runs passive checkpoints until the store closes, and a last
// full one then, so that a clean shutdown leaves a small WAL.
func (s *Store) checkpointer() {
	defer close(s.checkpointDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			<-s.done // the writer has committed its last batch
			s.checkpoint("TRUNCATE")
			s.closeCheckpointDB()
			return
		case <-t.C:
			// A failure leaves the frames in the WAL for the next try.
			s.checkpoint("PASSIVE")
		}
	}
}

// checkpoint runs one checkpoint on the checkpointer's connection, opened
// as needed: the writer closes it when it reopens its own.
func (s *Store) checkpoint(mode string) {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	if s.ck == nil {
		db, err := sql.Open("sqlite3", "file:"+escapePath(s.path)+"?_busy_timeout=5000")
		if err != nil {
			return
		}
		db.SetMaxOpenConns(1)
		s.ck = db
	}
	s.ck.Exec("PRAGMA wal_checkpoint(" + mode + ")")
}

func (s *Store) closeCheckpointDB() {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	if s.ck != nil {
		s.ck.Close()
		s.ck = nil
	}
}

func (s *Store) closeDBs() error {
	var err error
	if r := s.r.Load(); r != nil {
		err = r.Close()
	}
	s.closeWriter()
	return err
}
