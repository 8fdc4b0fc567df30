package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/greymilter/greymilter/greylist"
)

// purgeBatch bounds how many rows one purge transaction reads, so that
// decisions queued behind it wait little.
const purgeBatch = 2000

// Purge implements Store. Triplets and clients have no index on their
// times (schema.go says why), so the purge walks each table by primary
// key, a window of rows per writer transaction, and decides in Go which
// rows go: one walk over the triplets applies both max-age and the purge
// of unverified triplets.
func (s *Store) Purge(ctx context.Context, rules greylist.Rules, now time.Time) (greylist.PurgeStats, error) {
	var st greylist.PurgeStats
	expired := ms(now.Add(-rules.MaxAge))
	unverified := ms(now.Add(-rules.PurgeUnverified))
	if rules.MaxAge > 0 || rules.PurgeUnverified > 0 {
		triplets := tripletWalk
		triplets.goes = func(d []int64, st *greylist.PurgeStats) bool {
			last, first, passed, attempts := d[0], d[1], d[2], d[3]
			switch {
			case rules.MaxAge > 0 && last < expired:
				st.Triplets++
			case rules.PurgeUnverified > 0 && passed == 0 && first < unverified:
				st.Unverified++
				if attempts == 1 {
					st.NeverRetried++
				}
			default:
				return false
			}
			return true
		}
		if err := s.walk(ctx, triplets, &st); err != nil {
			return st, err
		}
	}
	if rules.MaxAge > 0 {
		clients := clientWalk
		clients.goes = func(d []int64, st *greylist.PurgeStats) bool {
			if d[0] >= expired {
				return false
			}
			st.Clients++
			return true
		}
		if err := s.walk(ctx, clients, &st); err != nil {
			return st, err
		}
	}
	for _, step := range []struct {
		query string
		arg   int64
	}{
		{`DELETE FROM decision_counts WHERE hour < ?`, now.Add(-greylist.CountsMaxAge).Unix() / 3600},
		// Expired runtime whitelist entries no longer match; the copy in
		// memory skips them until the next whitelist change reloads it.
		{`DELETE FROM whitelist WHERE expires != 0 AND expires < ?`, ms(now)},
	} {
		err := s.do(ctx, func(c *sql.Conn) error {
			_, err := c.ExecContext(context.Background(), step.query, step.arg)
			return err
		})
		if err != nil {
			return st, fmt.Errorf("greylist: purge: %w", err)
		}
	}
	return st, nil
}

// keyWalk is how the purge walks a table whose rows the index in memory
// holds, in the order of its primary key.
type keyWalk struct {
	table string
	// key are the primary key's columns, which fill a greylist.Key's
	// Client, Sender and Recipient in that order.
	key []string
	// data are the integer columns that goes reads, in this order.
	data []string
	// goes tells whether a row goes, and counts it in st if so.
	goes func(data []int64, st *greylist.PurgeStats) bool
	// forget is the index change of a deleted row.
	forget func(ix *index, k greylist.Key) change
}

var (
	tripletWalk = keyWalk{
		table:  "triplets",
		key:    []string{"client", "sender", "recipient"},
		data:   []string{"last_seen", "first_seen", "passed_at", "attempts"},
		forget: func(ix *index, k greylist.Key) change { return change{h: ix.hash(k), deleted: true} },
	}
	clientWalk = keyWalk{
		table:  "clients",
		key:    []string{"client"},
		data:   []string{"last_seen"},
		forget: func(_ *index, k greylist.Key) change { return change{client: k.Client, deleted: true} },
	}
)

// windowSQL selects the next window of rows, in primary-key order: after
// the cursor key unless first.
func (w keyWalk) windowSQL(first bool) string {
	cols := strings.Join(w.key, ", ")
	q := "SELECT " + cols + ", " + strings.Join(w.data, ", ") + " FROM " + w.table
	if !first {
		q += " WHERE (" + cols + ") > (" + placeholders(len(w.key)) + ")"
	}
	return q + " ORDER BY " + cols + " LIMIT ?"
}

// deleteSQL deletes one row by its primary key.
func (w keyWalk) deleteSQL() string {
	return "DELETE FROM " + w.table + " WHERE (" + strings.Join(w.key, ", ") + ") = (" + placeholders(len(w.key)) + ")"
}

// placeholders is n "?" parameters, separated by commas.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// keyFields are k's fields that hold a table's key of n columns, and
// keyArgs their values.
func keyFields(k *greylist.Key, n int) []any {
	return []any{&k.Client, &k.Sender, &k.Recipient}[:n]
}

func keyArgs(k greylist.Key, n int) []any {
	return []any{k.Client, k.Sender, k.Recipient}[:n]
}

// walk runs w's windows, one writer transaction each, until one comes
// back short, and adds what they deleted to st.
func (s *Store) walk(ctx context.Context, w keyWalk, st *greylist.PurgeStats) error {
	var cursor *greylist.Key // the last key of the previous window
	for {
		var win greylist.PurgeStats
		var n int
		var last greylist.Key
		err := s.do(ctx, func(c *sql.Conn) error {
			// A batch that failed runs its operations again one by one:
			// each run counts afresh.
			win = greylist.PurgeStats{}
			var err error
			n, last, err = s.window(c, w, cursor, &win)
			return err
		})
		if err != nil {
			return fmt.Errorf("greylist: purge %s: %w", w.table, err)
		}
		st.Triplets += win.Triplets
		st.Unverified += win.Unverified
		st.NeverRetried += win.NeverRetried
		st.Clients += win.Clients
		if n < purgeBatch {
			return nil
		}
		cursor = &last
	}
}

// window reads the rows of w after cursor (from the start if nil), up to
// purgeBatch, deletes those that go and stages their index deletions. It
// returns how many rows it read and the last one's key.
func (s *Store) window(c *sql.Conn, w keyWalk, cursor *greylist.Key, st *greylist.PurgeStats) (int, greylist.Key, error) {
	ctx := context.Background()
	var args []any
	if cursor != nil {
		args = keyArgs(*cursor, len(w.key))
	}
	var k greylist.Key
	rows, err := c.QueryContext(ctx, w.windowSQL(cursor == nil), append(args, purgeBatch)...)
	if err != nil {
		return 0, k, err
	}
	defer rows.Close()
	data := make([]int64, len(w.data))
	dest := keyFields(&k, len(w.key))
	for i := range data {
		dest = append(dest, &data[i])
	}
	var gone []greylist.Key
	n := 0
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, k, err
		}
		n++
		if w.goes(data, st) {
			gone = append(gone, k)
		}
	}
	if err := rows.Err(); err != nil {
		return n, k, err
	}
	rows.Close()
	if len(gone) == 0 {
		return n, k, nil
	}
	del, err := c.PrepareContext(ctx, w.deleteSQL())
	if err != nil {
		return n, k, err
	}
	defer del.Close()
	for _, g := range gone {
		if _, err := del.ExecContext(ctx, keyArgs(g, len(w.key))...); err != nil {
			return n, k, err
		}
		s.stage(w.forget(s.ix, g))
	}
	return n, k, nil
}
