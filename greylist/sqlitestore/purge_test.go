package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

const day = 24 * time.Hour

// TestPurgeWalksWindows purges more triplets and clients than several
// windows hold, with every kind of row interleaved in key order (so that
// window boundaries fall among clients' and senders' rows), and checks
// what went, what stayed, the counts and the index in memory.
func TestPurgeWalksWindows(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, filepath.Join(t.TempDir(), "g.db"))
	now := t0.Add(40 * day)
	expired := now.Add(-testRules.MaxAge)
	unverified := now.Add(-testRules.PurgeUnverified)
	kinds := []struct {
		name string
		rec  greylist.Record
		// goes is the count the row's purge adds to, "" if it stays.
		goes string
	}{
		{"expired", greylist.Record{FirstSeen: t0, LastSeen: t0.Add(day), PassedAt: t0.Add(10 * time.Minute), Attempts: 2}, "triplets"},
		{"expired and unverified", greylist.Record{FirstSeen: t0, LastSeen: t0.Add(day), Attempts: 1}, "triplets"},
		{"unverified", greylist.Record{FirstSeen: now.Add(-3 * day), LastSeen: now.Add(-3*day + time.Minute), Attempts: 3}, "unverified"},
		{"never retried", greylist.Record{FirstSeen: now.Add(-3 * day), LastSeen: now.Add(-3 * day), Attempts: 1}, "never retried"},
		{"young", greylist.Record{FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour), Attempts: 1}, ""},
		{"passed", greylist.Record{FirstSeen: now.Add(-2 * day), LastSeen: now.Add(-day), PassedAt: now.Add(-2 * day).Add(10 * time.Minute), Attempts: 2}, ""},
		{"seen at the max age", greylist.Record{FirstSeen: t0, LastSeen: expired, PassedAt: t0.Add(10 * time.Minute), Attempts: 2}, ""},
		{"first seen at the unverified age", greylist.Record{FirstSeen: unverified, LastSeen: unverified, Attempts: 1}, ""},
	}
	const n = purgeBatch*3 + 7
	kindOf := func(i int) int { return i * 5 % len(kinds) }
	// Seven triplets a client, three a sender: keys that share a client
	// or a sender straddle the window boundaries.
	keyOf := func(i int) greylist.Key {
		return greylist.Key{Client: fmt.Sprintf("192.0.2.%05d", i/7), Sender: fmt.Sprintf("s%d@example.org", i%7/3), Recipient: fmt.Sprintf("r%d@example.net", i%7)}
	}
	var want greylist.PurgeStats
	triplets := make([]greylist.Triplet, n)
	for i := range triplets {
		k := kinds[kindOf(i)]
		triplets[i] = greylist.Triplet{Key: keyOf(i), Record: k.rec}
		switch k.goes {
		case "triplets":
			want.Triplets++
		case "never retried":
			want.NeverRetried++
			fallthrough
		case "unverified":
			want.Unverified++
		}
	}
	const nClients = purgeBatch*2 + 3
	clients := make([]greylist.ClientEntry, nClients)
	for i := range clients {
		last := now.Add(-day)
		switch i % 3 {
		case 0:
			last = expired.Add(-time.Millisecond)
			want.Clients++
		case 1:
			last = expired
		}
		clients[i] = greylist.ClientEntry{Client: fmt.Sprintf("198.51.100.%05d", i), ClientRecord: greylist.ClientRecord{Passes: 1, LastSeen: last}}
	}
	if err := s.PutTriplets(ctx, triplets); err != nil {
		t.Fatal(err)
	}
	if err := s.PutClients(ctx, clients); err != nil {
		t.Fatal(err)
	}

	st, err := s.Purge(ctx, testRules, now)
	if err != nil {
		t.Fatal(err)
	}
	if st != want {
		t.Errorf("purge stats %+v, want %+v", st, want)
	}

	left, err := s.List(ctx, greylist.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[greylist.Key]bool{}
	for _, tr := range left {
		kept[tr.Key] = true
	}
	for i, tr := range triplets {
		k := kinds[kindOf(i)]
		if kept[tr.Key] != (k.goes == "") {
			t.Fatalf("triplet %d (%s): kept %v after the purge", i, k.name, kept[tr.Key])
		}
		got, found, _ := s.ix.triplet(s.ix.hash(tr.Key))
		if found != (k.goes == "") || found && got != toMem(tr.Record) {
			t.Fatalf("triplet %d (%s): index %v %+v after the purge", i, k.name, found, got.record())
		}
	}
	if len(left) != len(kept) || len(kept) != n-want.Triplets-want.Unverified {
		t.Errorf("%d triplets left, want %d", len(left), n-want.Triplets-want.Unverified)
	}
	leftClients, err := s.Clients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leftClients) != nClients-want.Clients {
		t.Errorf("%d clients left, want %d", len(leftClients), nClients-want.Clients)
	}
	for i, c := range clients {
		_, found, _ := s.ix.client(c.Client)
		if found != (i%3 != 0) {
			t.Fatalf("client %d (last seen %v): in the index %v after the purge", i, c.LastSeen, found)
		}
	}

	// Decisions see what the purge left: a purged triplet starts over,
	// a kept one goes on from its record.
	for i, tr := range triplets {
		k := kinds[kindOf(i)]
		res := mustAttempt(t, s, tr.Key, now)
		switch {
		case k.goes != "":
			if res.Outcome != greylist.New || res.Record.Attempts != 1 || !res.Record.FirstSeen.Equal(now) {
				t.Fatalf("triplet %d (%s), purged: attempt %+v, want a new triplet", i, k.name, res)
			}
		case k.name == "passed" || k.name == "seen at the max age":
			if res.Outcome != greylist.Known {
				t.Fatalf("triplet %d (%s), kept: attempt %+v, want known", i, k.name, res)
			}
		case k.name == "young":
			if res.Outcome != greylist.Passed || !res.Record.FirstSeen.Equal(tr.FirstSeen) {
				t.Fatalf("triplet %d (%s), kept: attempt %+v, want passed after its first attempt", i, k.name, res)
			}
		}
	}
}

// TestPurgeWindowSearchesPrimaryKey: the purge's queries go by the
// primary key, never scanning a table for a window or sorting it, since
// the tables have no other index (a SCAN of a million triplets for each
// window would hold up decisions).
func TestPurgeWindowSearchesPrimaryKey(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "g.db"))
	db := s.r.Load()
	for _, w := range []keyWalk{tripletWalk(1, 2), clientWalk(1)} {
		key := keyArgs(greylist.Key{Client: "192.0.2.1", Sender: "s@example.org", Recipient: "r@example.net"}, len(w.key))
		between := append(append([]any(nil), key...), key...)
		with := func(keys ...any) []any {
			return append(append(append([]any(nil), w.goesArgs...), keys...), w.flagsArgs...)
		}
		for _, q := range []struct {
			name, sql, want string
			args            []any
		}{
			// The first window's end is found reading the primary key
			// from its start, in its order, up to the offset.
			{"first window's end", w.endSQL(true), "SCAN " + w.table, []any{purgeBatch - 1}},
			{"next window's end", w.endSQL(false), "SEARCH " + w.table + " USING PRIMARY KEY", append(key, purgeBatch-1)},
			{"first window", w.purgeSQL(true, false), "SEARCH " + w.table + " USING PRIMARY KEY", with(key...)},
			{"middle window", w.purgeSQL(false, false), "SEARCH " + w.table + " USING PRIMARY KEY", with(between...)},
			{"last window", w.purgeSQL(false, true), "SEARCH " + w.table + " USING PRIMARY KEY", with(key...)},
		} {
			plan := queryPlan(t, db, q.sql, q.args)
			if len(plan) != 1 || !strings.HasPrefix(plan[0], q.want) ||
				strings.HasPrefix(q.want, "SCAN") && strings.Contains(plan[0], " USING ") {
				t.Errorf("%s, %s: query plan %q, want one step %q", w.table, q.name, plan, q.want)
			}
		}
	}
}

// queryPlan is the detail of each step of query's plan.
func queryPlan(t *testing.T, db *sql.DB, query string, args []any) []string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestUpgradeDropsTimeIndexes: a database of the schema before the
// indexes on times were dropped opens, keeps its rows, and is left with
// no index on triplets and clients but their primary keys.
func TestUpgradeDropsTimeIndexes(t *testing.T) {
	const oldVersion = 5 // the migrations before the one that drops them
	if !strings.Contains(migrations[oldVersion], "DROP INDEX IF EXISTS triplets_last_seen") {
		t.Fatalf("migration %d is not the one that drops the indexes", oldVersion+1)
	}
	path := filepath.Join(t.TempDir(), "g.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:oldVersion] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", oldVersion)); err != nil {
		t.Fatal(err)
	}
	if n := len(timeIndexes(t, db)); n != 3 {
		t.Fatalf("the old schema has %d indexes on triplets and clients, want 3", n)
	}
	const n = 300
	var triplets []greylist.Triplet
	for i := range n {
		tr := greylist.Triplet{Key: key(i), Record: greylist.Record{FirstSeen: t0.Add(time.Duration(i) * time.Second), LastSeen: t0.Add(time.Hour), Attempts: 1 + i%3}}
		if i%2 == 0 {
			tr.PassedAt = t0.Add(30 * time.Minute)
		}
		triplets = append(triplets, tr)
		if _, err := db.Exec(`INSERT INTO triplets VALUES (?, ?, ?, ?, ?, ?, ?)`,
			tr.Client, tr.Sender, tr.Recipient, ms(tr.FirstSeen), ms(tr.LastSeen), ms(tr.PassedAt), tr.Attempts); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO clients VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET passes = passes + 1`, tr.Client, 1, ms(tr.LastSeen)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := mustOpen(t, path)
	<-s.fillDone
	var version int
	if err := s.r.Load().QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("schema version %d (%v) after opening, want %d", version, err, len(migrations))
	}
	if left := timeIndexes(t, s.r.Load()); len(left) != 0 {
		t.Errorf("indexes left on triplets and clients: %q", left)
	}
	got, err := s.List(context.Background(), greylist.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d triplets after the upgrade, want %d", len(got), n)
	}
	stored := map[greylist.Key]greylist.Record{}
	for _, tr := range got {
		stored[tr.Key] = tr.Record
	}
	passes := map[string]int{}
	for _, tr := range triplets {
		passes[tr.Client]++
		if rec := stored[tr.Key]; !rec.FirstSeen.Equal(tr.FirstSeen) || !rec.LastSeen.Equal(tr.LastSeen) || !rec.PassedAt.Equal(tr.PassedAt) || rec.Attempts != tr.Attempts {
			t.Fatalf("triplet %v after the upgrade: %+v, want %+v", tr.Key, rec, tr.Record)
		}
		rec, found, _ := s.ix.triplet(s.ix.hash(tr.Key))
		if !found || rec != toMem(tr.Record) {
			t.Fatalf("triplet %v after the upgrade: %v %+v, want %+v", tr.Key, found, rec.record(), tr.Record)
		}
	}
	clients, err := s.Clients(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(clients) != len(passes) {
		t.Errorf("%d clients after the upgrade, want %d", len(clients), len(passes))
	}
	for _, c := range clients {
		if c.Passes != passes[c.Client] || !c.LastSeen.Equal(t0.Add(time.Hour)) {
			t.Errorf("client %+v after the upgrade, want %d passes", c, passes[c.Client])
		}
	}
}

// timeIndexes names the indexes on triplets and clients: a WITHOUT ROWID
// table's primary key is the table itself, so there are none but those
// created.
func timeIndexes(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name IN ('triplets', 'clients')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// BenchmarkPurgeWindow times one window of the purge over triplets, its
// transaction included: how long decisions queued behind it wait. In
// "keep" every row stays (a purge's usual window); in "delete" every row
// goes, and the store is refilled between windows.
func BenchmarkPurgeWindow(b *testing.B) {
	ctx := context.Background()
	now := t0.Add(time.Hour)
	fill := func(s *Store, first, n int, rec greylist.Record) {
		ts := make([]greylist.Triplet, n)
		for i := range ts {
			ts[i] = greylist.Triplet{Key: key(first + i), Record: rec}
		}
		if err := s.PutTriplets(ctx, ts); err != nil {
			b.Fatal(err)
		}
	}
	live := greylist.Record{FirstSeen: t0, LastSeen: now, PassedAt: t0.Add(10 * time.Minute), Attempts: 2}
	gone := greylist.Record{FirstSeen: t0, LastSeen: t0, Attempts: 1}
	walk := tripletWalk(ms(now), math.MinInt64)
	run := func(b *testing.B, s *Store) int {
		var more bool
		st := greylist.PurgeStats{}
		err := s.do(ctx, func(c *sql.Conn) error {
			var err error
			more, _, err = s.window(c, walk, nil, &st)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if !more {
			b.Fatal("the first window ended the table")
		}
		return st.Triplets
	}
	b.Run("keep", func(b *testing.B) {
		s, err := Open(filepath.Join(b.TempDir(), "g.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fill(s, 0, purgeBatch*5, live)
		b.ResetTimer()
		for b.Loop() {
			if n := run(b, s); n != 0 {
				b.Fatalf("%d rows of live triplets purged", n)
			}
		}
	})
	b.Run("delete", func(b *testing.B) {
		s, err := Open(filepath.Join(b.TempDir(), "g.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		i := 0
		for b.Loop() {
			b.StopTimer()
			fill(s, i, purgeBatch, gone)
			i += purgeBatch
			b.StartTimer()
			if n := run(b, s); n != purgeBatch {
				b.Fatalf("%d rows purged of a window of %d expired triplets", n, purgeBatch)
			}
		}
	})
}
