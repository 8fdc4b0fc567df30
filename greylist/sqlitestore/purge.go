package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
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
// key, a window of purgeBatch rows per writer transaction, and deletes the
// window's rows that go with one statement: SQLite reads the window, and
// only the rows deleted come back, for the index in memory and the
// counts. One walk over the triplets applies both max-age and the purge of
// unverified triplets.
func (s *Store) Purge(ctx context.Context, rules greylist.Rules, now time.Time) (greylist.PurgeStats, error) {
	var st greylist.PurgeStats
	// A rule that is off has a cut-off no time is before.
	expired, unverified := int64(math.MinInt64), int64(math.MinInt64)
	if rules.MaxAge > 0 {
		expired = ms(now.Add(-rules.MaxAge))
	}
	if rules.PurgeUnverified > 0 {
		unverified = ms(now.Add(-rules.PurgeUnverified))
	}
	if rules.MaxAge > 0 || rules.PurgeUnverified > 0 {
		if err := s.walk(ctx, tripletWalk(expired, unverified), &st); err != nil {
			return st, err
		}
	}
	if rules.MaxAge > 0 {
		if err := s.walk(ctx, clientWalk(expired), &st); err != nil {
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
	// goes is the SQL condition of a row that goes, with its arguments.
	goes     string
	goesArgs []any
	// flags are the boolean SQL expressions a deleted row returns after
	// its key, with their arguments; count counts the row in st by them.
	flags     []string
	flagsArgs []any
	count     func(flags []bool, st *greylist.PurgeStats)
	// forget is the index change of a deleted row.
	forget func(ix *index, k greylist.Key) change
}

// tripletWalk purges the triplets last seen before expired, and the
// unverified ones first seen before unverified (counted apart when not
// expired as well).
func tripletWalk(expired, unverified int64) keyWalk {
	return keyWalk{
		table:     "triplets",
		key:       []string{"client", "sender", "recipient"},
		goes:      "(last_seen < ? OR (passed_at = 0 AND first_seen < ?))",
		goesArgs:  []any{expired, unverified},
		flags:     []string{"last_seen < ?", "attempts = 1"},
		flagsArgs: []any{expired},
		count: func(f []bool, st *greylist.PurgeStats) {
			switch expiredRow, once := f[0], f[1]; {
			case expiredRow:
				st.Triplets++
			case once:
				st.Unverified++
				st.NeverRetried++
			default:
				st.Unverified++
			}
		},
		forget: func(ix *index, k greylist.Key) change { return change{h: ix.hash(k), deleted: true} },
	}
}

// clientWalk purges the clients last seen before expired.
func clientWalk(expired int64) keyWalk {
	return keyWalk{
		table:    "clients",
		key:      []string{"client"},
		goes:     "last_seen < ?",
		goesArgs: []any{expired},
		count:    func(_ []bool, st *greylist.PurgeStats) { st.Clients++ },
		forget:   func(_ *index, k greylist.Key) change { return change{client: k.Client, deleted: true} },
	}
}

// endSQL selects the last key of the window that follows the cursor (or
// starts the table, if first): purgeBatch rows on, in key order.
func (w keyWalk) endSQL(first bool) string {
	cols := strings.Join(w.key, ", ")
	q := "SELECT " + cols + " FROM " + w.table
	if !first {
		q += " WHERE (" + cols + ") > (" + placeholders(len(w.key)) + ")"
	}
	return q + " ORDER BY " + cols + " LIMIT 1 OFFSET ?"
}

// purgeSQL deletes the rows that go between the cursor (excluded; unless
// first) and the window's end key (included; unless last), returning
// their keys and flags.
func (w keyWalk) purgeSQL(first, last bool) string {
	cols := strings.Join(w.key, ", ")
	q := "DELETE FROM " + w.table + " WHERE " + w.goes
	if !first {
		q += " AND (" + cols + ") > (" + placeholders(len(w.key)) + ")"
	}
	if !last {
		q += " AND (" + cols + ") <= (" + placeholders(len(w.key)) + ")"
	}
	q += " RETURNING " + cols
	for _, f := range w.flags {
		q += ", " + f
	}
	return q
}

// placeholders is n "?" parameters, separated by commas.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// keyFields are k's fields that hold a table's key of n columns, and
// keyArgs their values; capped at n, so that appending to them never
// writes over the fields of the longer key.
func keyFields(k *greylist.Key, n int) []any {
	return []any{&k.Client, &k.Sender, &k.Recipient}[:n:n]
}

func keyArgs(k greylist.Key, n int) []any {
	return []any{k.Client, k.Sender, k.Recipient}[:n:n]
}

// walk runs w's windows, one writer transaction each, until the end of
// the table, and adds what they deleted to st.
func (s *Store) walk(ctx context.Context, w keyWalk, st *greylist.PurgeStats) error {
	var cursor *greylist.Key // the end key of the previous window
	for {
		var win greylist.PurgeStats
		var more bool
		var end greylist.Key
		err := s.do(ctx, func(c *sql.Conn) error {
			// A batch that failed runs its operations again one by one:
			// each run counts afresh.
			win = greylist.PurgeStats{}
			var err error
			more, end, err = s.window(c, w, cursor, &win)
			return err
		})
		if err != nil {
			return fmt.Errorf("greylist: purge %s: %w", w.table, err)
		}
		st.Triplets += win.Triplets
		st.Unverified += win.Unverified
		st.NeverRetried += win.NeverRetried
		st.Clients += win.Clients
		if !more {
			return nil
		}
		cursor = &end
	}
}

// window deletes the rows of w that go among the purgeBatch rows after
// cursor (from the start if nil) and stages their index deletions. It
// reports whether rows follow the window, and its end key.
func (s *Store) window(c *sql.Conn, w keyWalk, cursor *greylist.Key, st *greylist.PurgeStats) (more bool, end greylist.Key, err error) {
	ctx := context.Background()
	n := len(w.key)
	var after []any
	if cursor != nil {
		after = keyArgs(*cursor, n)
	}
	err = c.QueryRowContext(ctx, w.endSQL(cursor == nil), append(after, purgeBatch-1)...).Scan(keyFields(&end, n)...)
	switch {
	case err == nil:
		more = true
	case errors.Is(err, sql.ErrNoRows):
		// The table ends within this window.
	default:
		return false, end, err
	}
	args := append(append([]any(nil), w.goesArgs...), after...)
	if more {
		args = append(args, keyArgs(end, n)...)
	}
	rows, err := c.QueryContext(ctx, w.purgeSQL(cursor == nil, !more), append(args, w.flagsArgs...)...)
	if err != nil {
		return false, end, err
	}
	defer rows.Close()
	var k greylist.Key
	flags := make([]bool, len(w.flags))
	dest := keyFields(&k, n)
	for i := range flags {
		dest = append(dest, &flags[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return false, end, err
		}
		w.count(flags, st)
		s.stage(w.forget(s.ix, k))
	}
	return more, end, rows.Err()
}
