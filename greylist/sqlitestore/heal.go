package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/greymilter/greymilter/internal/loglevel"
)

// A write fault is an episode: from the first write that failed because of
// the world around the database (a read-only file or file system, a full
// disk, a lock held by another process) to the first write that commits
// again. It is logged once when it starts and once when it ends, not per
// decision. While it lasts, writes fail at once (decisions are answered
// per --on-error, in milliseconds) except for a retry every backoff
// interval, which reopens the writer's connection (SQLite keeps a
// read-only handle read-only forever) and tries a throwaway write.

// Backoff between retries of a faulty database: the first comes soon, so
// that a short fault heals quickly, later ones less often.
const (
	firstRetry = 250 * time.Millisecond
	maxRetry   = 5 * time.Second
)

// busyWait is how long one attempt to take the write lock waits (SQLite's
// busy timeout) before the writer looks again at the deadlines of the
// decisions waiting for it: a lock held by another process never keeps a
// decision past its deadline.
const busyWait = 50 * time.Millisecond

// answerMargin is the time kept, before a decision's deadline, to answer
// the MTA when the write lock is not free yet.
const answerMargin = 250 * time.Millisecond

// ErrUnavailable is what a write returns while the database is in a write
// fault; the cause is wrapped with it.
var ErrUnavailable = errors.New("sqlitestore: database cannot be written at the moment")

// health is the store's record of write faults, kept by the writer
// goroutine; the atomics are for the metrics.
type health struct {
	cause   error     // of the episode under way; nil when healthy
	since   time.Time // when the episode started
	failed  int       // writes failed in this episode
	reopen  bool      // the cause needs the connection reopened
	backoff time.Duration
	retryAt time.Time

	unwritable    atomic.Bool
	episodes      atomic.Int64
	failedWrites  atomic.Int64
	reopens       atomic.Int64
	fileProblem   atomic.Int32 // fileOK, fileDeleted, fileReplaced
	fileIncidents atomic.Int64
	recreated     atomic.Int64
}

// faultClass tells whether err comes from the world around the database
// rather than from one operation, and whether reopening the connection
// can help once the world is fixed.
func faultClass(err error) (fault, reopen bool) {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return false, false
	}
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked:
		return true, false
	case sqlite3.ErrReadonly, sqlite3.ErrCantOpen, sqlite3.ErrFull, sqlite3.ErrIoErr, sqlite3.ErrPerm,
		sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
		return true, true
	}
	return false, false
}

func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// writeFailed records a failed write whose cause is a fault; it starts an
// episode (and says so) if none is under way.
func (s *Store) writeFailed(err error, reopen bool) {
	h := &s.health
	h.failedWrites.Add(1)
	if h.cause != nil {
		h.failed++
		h.reopen = h.reopen || reopen
		return
	}
	h.cause, h.since, h.failed, h.reopen = err, time.Now(), 1, reopen
	h.backoff = firstRetry
	h.retryAt = time.Now().Add(h.backoff)
	h.unwritable.Store(true)
	h.episodes.Add(1)
	s.log.Error("sqlitestore: the database cannot be written; decisions that need a write are answered per --on-error until it can, retrying by itself",
		"db", s.path, "err", err)
}

// healed ends the episode under way, if any, after a write committed.
func (s *Store) healed() {
	h := &s.health
	if h.cause == nil {
		return
	}
	s.log.Log(context.Background(), loglevel.Notice, "sqlitestore: the database can be written again", "db", s.path,
		"fault_lasted", time.Since(h.since).Round(time.Millisecond), "failed_writes", h.failed, "was", h.cause.Error())
	h.cause, h.failed, h.reopen = nil, 0, false
	h.unwritable.Store(false)
}

// failFast is the error for writes arriving while an episode that needs a
// reopen waits for its next retry; nil when the write may go ahead.
func (s *Store) failFast(now time.Time) error {
	h := &s.health
	if h.cause == nil || !h.reopen || !now.Before(h.retryAt) {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, h.cause)
}

// retryTimer returns when the writer should retry on its own, even with
// no write waiting; nil when there is nothing to retry.
func (s *Store) retryTimer() <-chan time.Time {
	h := &s.health
	if h.cause == nil || !h.reopen {
		return nil
	}
	return time.After(time.Until(h.retryAt))
}

// retry reopens the writer's connection and tries a throwaway write. It
// reports whether the database can be written again; if not, the next
// retry comes after a longer backoff.
func (s *Store) retry() bool {
	h := &s.health
	err := s.reopenWriter()
	if err == nil {
		err = s.writeTest()
	}
	if err == nil {
		s.healed()
		return true
	}
	h.failed++
	h.backoff = min(2*h.backoff, maxRetry)
	h.retryAt = time.Now().Add(h.backoff)
	s.log.Debug("sqlitestore: the database still cannot be written", "db", s.path, "err", err, "next_retry", h.backoff)
	return false
}

// Collectors are the store's health metrics, read at scrape time.
func (s *Store) Collectors() []prometheus.Collector {
	h := &s.health
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "greymilter_store_writable",
			Help: "Whether the last write to the SQLite database committed (0 during a write fault)."},
			func() float64 { return float64(boolInt(!h.unwritable.Load())) }),
		counter("greymilter_store_write_faults_total", "Write fault episodes (read-only, disk full, locked, I/O errors).", &h.episodes),
		counter("greymilter_store_failed_writes_total", "Writes that failed during write faults.", &h.failedWrites),
		counter("greymilter_store_reopens_total", "Times the writer's connection was reopened to heal a fault.", &h.reopens),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "greymilter_store_file_ok",
			Help: "Whether the database file at its path is the one greymilter has open (0: deleted or replaced)."},
			func() float64 { return float64(boolInt(h.fileProblem.Load() == fileOK)) }),
		counter("greymilter_store_file_incidents_total", "Times the database file was found deleted or replaced.", &h.fileIncidents),
		counter("greymilter_store_file_recreated_total", "Times a deleted database file was written again from the open database.", &h.recreated),
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
