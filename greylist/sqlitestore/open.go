package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/greymilter/greymilter/greylist"
)

// Open opens (creating and migrating as needed) the database at path;
// ":memory:" keeps everything in memory.
func Open(path string) (*Store, error) { return open(path, nil) }

// open is Open logging through log (nil: slog.Default()).
func open(path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
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
				log.Error("filling the in-memory index failed; reads go to the database", "db", path, "err", err)
				return
			}
			log.Debug("in-memory index filled", "db", path, "took", time.Since(start))
		}()
	}
	if err := s.loadWhitelist(context.Background()); err != nil {
		s.Close()
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
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

func (s *Store) closeDBs() error {
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.wc.Close(), s.w.Close())
	return errors.Join(errs...)
}
