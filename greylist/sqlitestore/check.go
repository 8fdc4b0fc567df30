package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/greymilter/greymilter/greylist"
)

// recoverHint tells the operator what to do with a damaged database.
const recoverHint = "start greymilter once with --db-recover: it moves the damaged file aside (FILE.corrupt-TIMESTAMP, with its -wal and -shm) and starts a fresh database with every row that can still be read"

// checkFile runs PRAGMA quick_check on an existing database file. A
// damaged one is an error wrapping greylist.ErrCorrupt that says what is
// wrong and what to do; with recover it is moved aside instead, and what
// can be read from it is copied into the fresh database that OpenWith then
// creates (s.salvage names the file to copy from).
func (s *Store) checkFile(recover bool) error {
	if _, err := os.Stat(s.path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	problem, err := quickCheck(s.path)
	if err != nil {
		return classify(s.path, err)
	}
	if problem == "" {
		return nil
	}
	if !recover {
		return fmt.Errorf("%s: %w: %s; %s", s.path, greylist.ErrCorrupt, problem, recoverHint)
	}
	aside := s.path + ".corrupt-" + time.Now().UTC().Format("20060102T150405")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		err := os.Rename(s.path+suffix, aside+suffix)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("greylist: --db-recover: moving the damaged %s aside: %w", s.path, err)
		}
	}
	s.log.Warn("sqlitestore: the database is damaged; moved it aside to start a fresh one with what can still be read",
		"db", s.path, "problem", problem, "moved_to", aside)
	s.salvage = aside
	return nil
}

// quickCheck returns what PRAGMA quick_check finds wrong with the database
// at path, "" when nothing.
func quickCheck(path string) (string, error) {
	db, err := sql.Open("sqlite3", "file:"+escapePath(path)+"?_query_only=true&_busy_timeout=5000")
	if err != nil {
		return "", err
	}
	defer db.Close()
	rows, err := db.Query("PRAGMA quick_check(20)")
	if err != nil {
		return damage(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return "", err
		}
		if line != "ok" {
			lines = append(lines, line)
		}
	}
	if err := rows.Err(); err != nil {
		problem, err := damage(err)
		if err != nil {
			return "", err
		}
		// What quick_check said before it gave up is the precise part.
		return strings.Join(append(lines, problem), "; "), nil
	}
	return strings.Join(lines, "; "), nil
}

// damage turns SQLite's errors that mean a damaged file into a problem
// description; other errors stay errors.
func damage(err error) (string, error) {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrNotADB:
			return "not an SQLite database, or its header is damaged (" + err.Error() + ")", nil
		case sqlite3.ErrCorrupt:
			return "SQLite reports it malformed (" + err.Error() + ")", nil
		}
	}
	return "", err
}

// classify wraps an error met opening path, naming what it means.
func classify(path string, err error) error {
	if problem, derr := damage(err); derr == nil {
		return fmt.Errorf("%s: %w: %s; %s", path, greylist.ErrCorrupt, problem, recoverHint)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// unwritable explains why the database at path cannot be written: SQLite
// says "readonly" whether the file, its directory (where the -wal and
// -shm files go) or the file system is at fault.
func unwritable(path string, err error) error {
	detail := ""
	if fi, serr := os.Stat(path); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			detail = fmt.Sprintf(" (file mode %v, owner uid %d gid %d; greymilter runs as uid %d gid %d)", fi.Mode().Perm(), st.Uid, st.Gid, os.Geteuid(), os.Getegid())
		}
	}
	return fmt.Errorf("%s: %w: %w%s; greymilter needs to write the file and create %s-wal and %s-shm in its directory",
		path, greylist.ErrUnwritable, err, detail, path, path)
}

// salvageFrom copies into the (fresh) database of c every row of src that
// can still be read. A damaged B-tree page cuts a scan short, so a table
// that fails forwards is read again backwards in key order: only the rows
// between its first and last damaged pages are lost.
func salvageFrom(c *sql.Conn, src string, log *slog.Logger) error {
	from, cleanup, err := readableCopy(src)
	if err != nil {
		return err
	}
	defer cleanup()
	db, err := sql.Open("sqlite3", "file:"+escapePath(from)+"?_query_only=true")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	tables := []struct{ name, cols, key string }{
		{"triplets", "client, sender, recipient, first_seen, last_seen, passed_at, attempts", "client, sender, recipient"},
		{"clients", "client, passes, last_seen", "client"},
		{"decision_counts", "hour, action, reason, n", "hour, action, reason"},
	}
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	var kept []any
	for _, t := range tables {
		n := strings.Count(t.cols, ",") + 1
		ins := fmt.Sprintf("INSERT OR IGNORE INTO %s (%s) VALUES (%s)", t.name, t.cols, placeholders(n))
		var lost error
		for _, order := range []string{"ASC", "DESC"} {
			keys := strings.ReplaceAll(t.key, ",", " "+order+",") + " " + order
			lost = copyRows(ctx, db, c, fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", t.cols, t.name, keys), ins, n)
			if lost == nil {
				break // read whole: no need to come from the other end
			}
		}
		var rows int
		c.QueryRowContext(ctx, "SELECT count(*) FROM "+t.name).Scan(&rows)
		kept = append(kept, t.name, rows)
		if lost != nil {
			log.Warn("sqlitestore: --db-recover: rows of a damaged part of a table are lost", "table", t.name, "kept", rows, "err", lost)
		}
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		c.ExecContext(ctx, "ROLLBACK")
		return err
	}
	log.Warn("sqlitestore: --db-recover: copied what could be read into the fresh database", append([]any{"from", src}, kept...)...)
	return nil
}

// copyRows inserts the rows query returns until it ends or fails.
func copyRows(ctx context.Context, from *sql.DB, to *sql.Conn, query, insert string, n int) error {
	rows, err := from.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if _, err := to.ExecContext(ctx, insert, vals...); err != nil {
			return err
		}
	}
	return rows.Err()
}

// sqliteMagic starts every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// readableCopy returns src if SQLite can open it; if its header's magic
// string is damaged, a copy with the magic restored (the rest of the
// header is usually intact), removed by cleanup.
func readableCopy(src string) (path string, cleanup func(), err error) {
	f, err := os.Open(src)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	head := make([]byte, len(sqliteMagic))
	if _, err := io.ReadFull(f, head); err != nil || string(head) == sqliteMagic {
		return src, func() {}, nil
	}
	tmp := src + ".readable"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.Remove(tmp); os.Remove(tmp + "-wal"); os.Remove(tmp + "-shm") }
	_, err = f.Seek(0, io.SeekStart)
	if err == nil {
		_, err = io.Copy(out, f)
	}
	if err == nil {
		_, err = out.WriteAt([]byte(sqliteMagic), 0)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, err
	}
	// The WAL goes along: it holds what was committed since the last checkpoint.
	if wal, err := os.ReadFile(src + "-wal"); err == nil {
		os.WriteFile(tmp+"-wal", wal, 0o600)
	}
	return tmp, cleanup, nil
}
