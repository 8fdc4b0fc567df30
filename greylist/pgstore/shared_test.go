package pgstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/storetest"
	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

// count runs a counting query on dsn.
func count(t *testing.T, dsn, query string, args ...any) int64 {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int64
	if err := c.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestTwoHostsSameTriplets: two stores (two hosts) on one database get the
// same new triplets at the same instant, each from many goroutines:
// exactly one attempt of each triplet is its first, every attempt is
// counted, and each triplet has one row.
func TestTwoHostsSameTriplets(t *testing.T) {
	dsn := pgtest.Shared(t).NewDatabase(t)
	o := greylist.Options{Timeout: conformanceTimeout}
	hosts := []*Store{openDSN(t, dsn, o), openDSN(t, dsn, o)}
	const triplets, perHost = 300, 2
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := make(map[int]int)
	for _, h := range hosts {
		for range perHost {
			wg.Go(func() {
				<-start
				for i := range triplets {
					// Each decision looks up first, as the engine does.
					if _, _, err := h.Lookup(context.Background(), storetest.Key(i)); err != nil {
						t.Error(err)
						return
					}
					res, err := h.Attempt(context.Background(), storetest.Key(i), storetest.Rules, storetest.T0)
					if err != nil {
						t.Error(err)
						return
					}
					if !res.Outcome.Deferred() {
						t.Errorf("triplet %d: %v, want deferred", i, res.Outcome)
					}
					if res.Outcome == greylist.New {
						mu.Lock()
						firsts[i]++
						mu.Unlock()
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	for i := range triplets {
		if firsts[i] != 1 {
			t.Errorf("triplet %d: %d first attempts, want 1", i, firsts[i])
		}
	}
	if n := count(t, dsn, `SELECT count(*) FROM triplets`); n != triplets {
		t.Errorf("%d rows, want %d", n, triplets)
	}
	if n := count(t, dsn, `SELECT count(*) FROM triplets WHERE attempts != $1`, 2*perHost); n != 0 {
		t.Errorf("%d triplets without all %d attempts counted", n, 2*perHost)
	}
	// Greylisted through one host, passed through the other.
	if res := storetest.Attempt(t, hosts[1], storetest.Key(0), storetest.T0.Add(6*time.Minute)); res.Outcome != greylist.Passed {
		t.Errorf("retry at the other host: %v, want passed", res.Outcome)
	}
}

// TestMigrationsTogether: hosts starting together on a new database all
// start, and the schema is made once.
func TestMigrationsTogether(t *testing.T) {
	dsn := pgtest.Shared(t).NewDatabase(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { openDSN(t, dsn, greylist.Options{}) })
	}
	wg.Wait()
	if n := count(t, dsn, `SELECT version FROM greymilter_schema`); n != int64(len(migrations)) {
		t.Errorf("schema version %d, want %d", n, len(migrations))
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.Shared(t).NewDatabase(t)
	s := openDSN(t, dsn, greylist.Options{})
	s.Close()
	if err := pgtest.Exec(context.Background(), dsn, `UPDATE greymilter_schema SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(context.Background(), dsn, greylist.Options{}); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestPurgeOneHostAtATime: while another host holds the purge lock, a
// purge does nothing; once it is free, the purge runs.
func TestPurgeOneHostAtATime(t *testing.T) {
	dsn := pgtest.Shared(t).NewDatabase(t)
	s := openDSN(t, dsn, greylist.Options{})
	storetest.Attempt(t, s, storetest.Key(1), storetest.T0)
	ctx := context.Background()
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockPurge); err != nil {
		t.Fatal(err)
	}
	later := storetest.T0.Add(3 * 24 * time.Hour)
	if st, err := s.Purge(ctx, storetest.Rules, later); err != nil || st != (greylist.PurgeStats{}) {
		t.Fatalf("purge while another host purges: %+v %v, want nothing done", st, err)
	}
	if n := count(t, dsn, `SELECT count(*) FROM triplets`); n != 1 {
		t.Fatalf("%d triplets after a skipped purge, want 1", n)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, lockPurge); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Purge(ctx, storetest.Rules, later); err != nil || st.Unverified != 1 {
		t.Fatalf("purge with the lock free: %+v %v, want 1 unverified purged", st, err)
	}
}

// TestFailoverURL: a URL naming a dead host first and the live one second
// (libpq's multi-host form, in both syntaxes) works through the live one.
func TestFailoverURL(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	dead := harness.FreePort(t) // nothing listens there
	for _, url := range []string{
		fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write", dead, srv.Port, db),
		fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d dbname=%s user=postgres sslmode=disable target_session_attrs=read-write", dead, srv.Port, db),
	} {
		st, err := greylist.Open(context.Background(), url, greylist.Options{})
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if _, ok := st.(*Store); !ok {
			t.Fatalf("%s opened a %T", url, st)
		}
		storetest.Attempt(t, st, storetest.Key(1), storetest.T0)
		st.Close()
	}
	if n := count(t, dsn, `SELECT attempts FROM triplets`); n != 2 {
		t.Errorf("attempts %d through the two URLs, want 2", n)
	}
}

func TestIsDSN(t *testing.T) {
	for dsn, want := range map[string]bool{
		"postgres://u@db/greylist":             true,
		"postgresql://u@db1,db2/greylist":      true,
		"host=db1,db2 dbname=greylist":         true,
		" dbname = greylist":                   true,
		"/var/lib/greymilter/greymilter.db":    false,
		":memory:":                             false,
		"greymilter.db":                        false,
		"./odd=name.db":                        false,
		"file:/var/lib/greymilter/x.db?mode=r": false,
	} {
		if got := IsDSN(dsn); got != want {
			t.Errorf("IsDSN(%q) = %v, want %v", dsn, got, want)
		}
	}
}
