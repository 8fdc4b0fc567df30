package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// TestLockedWriteAnswersByDeadline: with another connection holding the
// write lock, an attempt fails shortly before its context's deadline (not
// after SQLite's busy timeout), the store says it cannot write, and once
// the lock is released the next attempt commits.
func TestLockedWriteAnswersByDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := mustOpen(t, path)
	other, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	ctx := context.Background()
	lock, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	actx, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Attempt(actx, key(1), testRules, now)
	took := time.Since(start)
	if err == nil {
		t.Fatal("attempt committed while another connection held the write lock")
	}
	if took > 600*time.Millisecond || took < 300*time.Millisecond {
		t.Errorf("locked attempt failed after %v, want shortly before its 600ms deadline", took)
	}
	if !s.health.unwritable.Load() {
		t.Error("the store does not say it cannot write")
	}
	if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	lock.Close()
	if res := mustAttempt(t, s, key(1), now); res.Outcome != greylist.New {
		t.Errorf("after the lock: %v, want new (the failed attempt left nothing)", res.Outcome)
	}
	if s.health.unwritable.Load() {
		t.Error("the store still says it cannot write after a commit")
	}
}

// TestDeletedFileIsWrittenAgain: a database file deleted while the store
// runs is written again at its path, with what was committed before and
// what is committed after.
func TestDeletedFileIsWrittenAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mustAttempt(t, s, key(1), now)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * fileCheckInterval)
	for s.health.recreated.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the deleted file was not written again within %v", 3*fileCheckInterval)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.health.fileIncidents.Load() != 1 {
		t.Errorf("%d file incidents, want 1", s.health.fileIncidents.Load())
	}
	mustAttempt(t, s, key(2), now)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	for _, i := range []int{1, 2} {
		if _, found, err := s.Lookup(context.Background(), key(i)); err != nil || !found {
			t.Errorf("triplet %d after the file was written again: found %v, %v", i, found, err)
		}
	}
}

// TestDamagedHeader: a database whose header is overwritten is refused
// with greylist.ErrCorrupt and a hint of Recover; with Recover it is moved
// aside and every row is kept.
func TestDamagedHeader(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "g.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 50 {
		mustAttempt(t, s, key(i), now)
	}
	s.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("not a database!!"), 0)
	f.Close()
	if _, err := Open(path); !errors.Is(err, greylist.ErrCorrupt) {
		t.Fatalf("damaged header: %v, want ErrCorrupt", err)
	}
	s, err = OpenWith(path, Options{Recover: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 50 {
		if _, found, err := s.Lookup(context.Background(), key(i)); err != nil || !found {
			t.Fatalf("triplet %d after --db-recover: found %v, %v", i, found, err)
		}
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
		t.Errorf("moved aside: %v, want one file", aside)
	}
}
