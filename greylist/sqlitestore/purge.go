package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/greymilter/greymilter/greylist"
)

// purgeBatch bounds how many rows one purge transaction deletes, so that
// decisions queued behind it wait little.
const purgeBatch = 2000

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
		// once, if set, counts the deleted triplets of one attempt, which
		// the query returns as a fourth column.
		once *int
	}
	limit := fmt.Sprint(purgeBatch)
	var steps []purgeStep
	if rules.MaxAge > 0 {
		steps = append(steps,
			purgeStep{&st.Triplets, "triplets", `DELETE FROM triplets WHERE (client, sender, recipient) IN
				(SELECT client, sender, recipient FROM triplets WHERE last_seen < ? LIMIT ` + limit + `)
				RETURNING client, sender, recipient`, old, nil},
			purgeStep{&st.Clients, "clients", `DELETE FROM clients WHERE client IN
				(SELECT client FROM clients WHERE last_seen < ? LIMIT ` + limit + `) RETURNING client`, old, nil})
	}
	steps = append(steps, purgeStep{new(int), "", `DELETE FROM decision_counts WHERE hour < ?`, now.Add(-greylist.CountsMaxAge).Unix() / 3600, nil})
	// Expired runtime whitelist entries no longer match; the copy in
	// memory skips them until the next whitelist change reloads it.
	steps = append(steps, purgeStep{new(int), "", `DELETE FROM whitelist WHERE expires != 0 AND expires < ?`, ms(now), nil})
	if rules.PurgeUnverified > 0 {
		steps = append(steps, purgeStep{&st.Unverified, "triplets", `DELETE FROM triplets WHERE (client, sender, recipient) IN
			(SELECT client, sender, recipient FROM triplets WHERE passed_at = 0 AND first_seen < ? LIMIT ` + limit + `)
			RETURNING client, sender, recipient, attempts = 1`,
			ms(now.Add(-rules.PurgeUnverified)), &st.NeverRetried})
	}
	for _, step := range steps {
		for {
			var n int
			err := s.do(ctx, func(c *sql.Conn) error {
				var err error
				n, err = s.purgeBatch(c, step.what, step.query, step.arg, step.once)
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
// deletions of what it returned; once, if set, counts the triplets whose
// fourth column is true.
func (s *Store) purgeBatch(c *sql.Conn, what, query string, arg int64, once *int) (int, error) {
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
			var one bool
			dest := []any{&k.Client, &k.Sender, &k.Recipient}
			if once != nil {
				dest = append(dest, &one)
			}
			if err := rows.Scan(dest...); err != nil {
				return n, err
			}
			s.stage(change{h: s.ix.hash(k), deleted: true})
			if one {
				*once++
			}
		}
		n++
	}
	return n, rows.Err()
}
