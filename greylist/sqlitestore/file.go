package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// A database file deleted while greymilter runs would go on being written,
// unlinked, and be lost at the next start; one replaced under it (a backup
// put back, a stray rename) would be left unused. The store looks at its
// path every fileCheckInterval and says so loudly (an error log, repeated
// every fileComplaintInterval while it lasts, and a metric).
//
// A deleted file is written again at its path from the database still
// open (VACUUM INTO), so nothing is lost and greymilter carries on with
// it. A replaced file is someone's deliberate act that greymilter cannot
// merge with what it has: it keeps serving from the file it has open and
// asks the operator to restart it, which switches to the new file.
const (
	fileCheckInterval     = 2 * time.Second
	fileComplaintInterval = time.Minute
)

// What the file at the store's path is.
const (
	fileOK int32 = iota
	fileDeleted
	fileReplaced
)

// watchFile checks the database's path until the store closes.
func (s *Store) watchFile() {
	defer close(s.watchDone)
	t := time.NewTicker(fileCheckInterval)
	defer t.Stop()
	var complained time.Time
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		state := s.fileState()
		prev := s.health.fileProblem.Swap(state)
		if state == fileOK {
			continue
		}
		if prev != state {
			s.health.fileIncidents.Add(1)
		} else if time.Since(complained) < fileComplaintInterval {
			continue
		}
		complained = time.Now()
		if state == fileReplaced {
			s.log.Error("sqlitestore: the database file was replaced by another file while greymilter runs; it keeps using the one it has open (now unlinked) and does not read the new one: restart greymilter to use the new file (what was written since it was replaced is then lost)",
				"db", s.path)
			continue
		}
		s.log.Error("sqlitestore: the database file was deleted while greymilter runs; writing it again from the database still open", "db", s.path)
		if err := s.inWriter(s.recreate); err != nil {
			s.log.Error("sqlitestore: could not write the deleted database file again; greymilter keeps the database it has open, and all state written since is lost at the next start unless this succeeds (retrying)",
				"db", s.path, "err", err)
			continue
		}
		s.health.recreated.Add(1)
		s.health.fileProblem.Store(fileOK)
		s.log.Warn("sqlitestore: the deleted database file is back at its path, with everything greymilter had", "db", s.path)
	}
}

// fileState tells whether the file open is still the one at the path. The
// store holds the file open itself (s.held): once it has no link left it
// was deleted, or renamed over. A new empty file at the path counts as
// none: a connection opening the path after the deletion creates one.
func (s *Store) fileState() int32 {
	s.fileMu.Lock()
	held := s.held
	s.fileMu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(held.Fd()), &st); err != nil || st.Nlink > 0 {
		return fileOK
	}
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Size() == 0) {
		return fileDeleted
	}
	return fileReplaced
}

// hold opens the database file for fileState.
func (s *Store) hold() error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	s.fileMu.Lock()
	old := s.held
	s.held = f
	s.fileMu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// inWriter runs fn in the writer goroutine, between two batches.
func (s *Store) inWriter(fn func() error) error {
	done := make(chan error, 1)
	select {
	case s.control <- func() { done <- fn() }:
	case <-s.quit:
		return errors.New("store closing")
	}
	return <-done
}

// recreate writes the open database to a new file at its path, then
// reopens every connection on it. It runs in the writer goroutine.
func (s *Store) recreate() error {
	if s.wc == nil {
		return fmt.Errorf("the writer's connection is down: %w", s.health.cause)
	}
	tmp := s.path + ".recreate"
	os.Remove(tmp)
	if _, err := s.wc.ExecContext(context.Background(), "VACUUM INTO ?", tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copying the open database to %s: %w", tmp, err)
	}
	// Every connection to the unlinked file closes before the new one
	// takes its place: its -wal and -shm, if still at the path, belong to
	// the old file and must not be read as the new one's.
	if r := s.r.Swap(nil); r != nil {
		r.Close()
	}
	s.closeWriter()
	s.closeCheckpointDB()
	for _, suffix := range []string{"", "-wal", "-shm"} { // "": an empty file a connection left
		if err := os.Remove(s.path + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the old %s%s: %w", s.path, suffix, err)
		}
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("moving %s to %s: %w", tmp, s.path, err)
	}
	if err := s.hold(); err != nil {
		return err
	}
	if err := s.reopenWriter(); err != nil {
		s.writeFailed(err, true)
		return err
	}
	r, err := openReaders(s.path)
	if err != nil {
		return err
	}
	s.r.Store(r)
	return nil
}
