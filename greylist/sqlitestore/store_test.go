package sqlitestore

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

var testRules = greylist.Rules{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxWait: 12 * time.Hour, MaxAge: 35 * 24 * time.Hour, PurgeUnverified: 48 * time.Hour}

func openers(t *testing.T) map[string]func() *Store {
	return map[string]func() *Store{
		"memory": func() *Store { return mustOpen(t, ":memory:") },
		"file":   func() *Store { return mustOpen(t, filepath.Join(t.TempDir(), "g.db")) },
	}
}

func mustOpen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func key(i int) greylist.Key {
	return greylist.Key{Client: fmt.Sprintf("192.0.%d.0/24", i%250), Sender: fmt.Sprintf("s%d@example.org", i), Recipient: "r@example.net"}
}

func TestStoreAttemptLifecycle(t *testing.T) {
	for name, open := range openers(t) {
		t.Run(name, func(t *testing.T) {
			s := open()
			ctx := context.Background()
			k := key(1)
			steps := []struct {
				at   time.Duration
				want greylist.Outcome
			}{{0, greylist.New}, {time.Minute, greylist.EarlyRetry}, {6 * time.Minute, greylist.Passed}, {7 * time.Minute, greylist.Known}}
			for _, st := range steps {
				res, err := s.Attempt(ctx, k, testRules, t0.Add(st.at))
				if err != nil {
					t.Fatal(err)
				}
				if res.Outcome != st.want {
					t.Fatalf("at +%v: %v, want %v", st.at, res.Outcome, st.want)
				}
			}
			rec, found, err := s.Lookup(ctx, k)
			if err != nil || !found {
				t.Fatalf("Lookup: %v %v", found, err)
			}
			if !rec.FirstSeen.Equal(t0) || !rec.PassedAt.Equal(t0.Add(6*time.Minute)) || rec.Attempts != 3 {
				t.Errorf("stored record %+v", rec)
			}
			c, found, err := s.Client(ctx, k.Client)
			if err != nil || !found || c.Passes != 1 {
				t.Errorf("client record %+v found=%v err=%v, want 1 pass", c, found, err)
			}
			if _, found, _ := s.Lookup(ctx, key(2)); found {
				t.Error("Lookup of an unknown triplet found something")
			}
		})
	}
}

func TestStoreConcurrentAttemptsAreAtomic(t *testing.T) {
	for name, open := range openers(t) {
		t.Run(name, func(t *testing.T) {
			s := open()
			const n = 64
			var wg sync.WaitGroup
			outcomes := make(chan greylist.Outcome, n)
			for range n {
				wg.Go(func() {
					res, err := s.Attempt(context.Background(), key(7), testRules, t0)
					if err != nil {
						t.Error(err)
						return
					}
					outcomes <- res.Outcome
				})
			}
			wg.Wait()
			close(outcomes)
			count := map[greylist.Outcome]int{}
			for o := range outcomes {
				count[o]++
			}
			if count[greylist.New] != 1 || count[greylist.EarlyRetry] != n-1 {
				t.Errorf("outcomes %v, want exactly one new and %d early retries", count, n-1)
			}
			rec, _, _ := s.Lookup(context.Background(), key(7))
			if rec.Attempts != n {
				t.Errorf("attempts = %d, want %d", rec.Attempts, n)
			}
		})
	}
}

func TestStorePurge(t *testing.T) {
	for name, open := range openers(t) {
		t.Run(name, func(t *testing.T) {
			s := open()
			ctx := context.Background()
			day := 24 * time.Hour
			// Passed long ago, never seen since: expired by max-age.
			mustAttempt(t, s, key(1), t0)
			mustAttempt(t, s, key(1), t0.Add(10*time.Minute))
			// Passed long ago but touched recently: kept.
			mustAttempt(t, s, key(2), t0)
			mustAttempt(t, s, key(2), t0.Add(10*time.Minute))
			s.Touch(key(2), t0.Add(30*day))
			// Never passed, first seen 3 days before the purge: unverified.
			mustAttempt(t, s, key(3), t0.Add(33*day))
			// The same, retried too early once: unverified, but retried.
			mustAttempt(t, s, key(5), t0.Add(33*day))
			mustAttempt(t, s, key(5), t0.Add(33*day+time.Minute))
			// Never passed, recent: kept.
			mustAttempt(t, s, key(4), t0.Add(36*day-time.Hour))

			st, err := s.Purge(ctx, testRules, t0.Add(36*day))
			if err != nil {
				t.Fatal(err)
			}
			if st.Triplets != 1 || st.Unverified != 2 || st.NeverRetried != 1 {
				t.Errorf("purge stats %+v, want 1 expired and 2 unverified triplets, 1 never retried", st)
			}
			for i, want := range map[int]bool{1: false, 2: true, 3: false, 4: true, 5: false} {
				if _, found, _ := s.Lookup(ctx, key(i)); found != want {
					t.Errorf("triplet %d found=%v after purge, want %v", i, found, want)
				}
			}
			if _, found, _ := s.Client(ctx, key(1).Client); found {
				t.Error("client of an expired triplet kept")
			}
			if _, found, _ := s.Client(ctx, key(2).Client); !found {
				t.Error("touched client purged")
			}
		})
	}
}

func TestStorePurgeManyInBatches(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "g.db"))
	const n = 2*purgeBatch + 17
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { mustAttempt(t, s, key(i), t0) })
	}
	wg.Wait()
	st, err := s.Purge(context.Background(), testRules, t0.Add(3*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Unverified != n {
		t.Errorf("purged %d unverified, want %d", st.Unverified, n)
	}
}

func mustAttempt(t *testing.T, s greylist.Store, k greylist.Key, at time.Time) greylist.Result {
	t.Helper()
	res, err := s.Attempt(context.Background(), k, testRules, at)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestStoreReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mustAttempt(t, s, key(1), t0)
	mustAttempt(t, s, key(1), t0.Add(10*time.Minute))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attempt(context.Background(), key(1), testRules, t0); err != greylist.ErrClosed {
		t.Errorf("Attempt on a closed store: %v, want greylist.ErrClosed", err)
	}
	s2 := mustOpen(t, path)
	if res := mustAttempt(t, s2, key(1), t0.Add(time.Hour)); res.Outcome != greylist.Known {
		t.Errorf("after reopen: %v, want known", res.Outcome)
	}
}

func TestStoreRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

// crashChildEnv names the database a re-executed test binary writes to
// until it is killed.
const crashChildEnv = "GREYLIST_CRASH_CHILD_DB"

// TestCrashChild is not a test of its own: TestStoreSurvivesKill runs it
// in a child process, which commits triplets and says which on stdout.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("run by TestStoreSurvivesKill")
	}
	s, err := Open(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 1_000_000; i += 8 {
				if _, err := s.Attempt(context.Background(), key(i), testRules, t0); err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintln(out, i)
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestStoreSurvivesKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Read committed triplets until enough are in, then kill -9 while the
	// child is still writing.
	var committed []int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && len(committed) < 3000 {
		var i int
		if _, err := fmt.Sscan(sc.Text(), &i); err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		committed = append(committed, i)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Lines already written when the kill landed are committed too.
	for sc.Scan() {
		var i int
		if _, err := fmt.Sscan(sc.Text(), &i); err == nil {
			committed = append(committed, i)
		}
	}
	cmd.Wait()
	if len(committed) < 3000 {
		t.Fatalf("child committed only %d triplets before dying", len(committed))
	}

	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var integrity string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check = %q, %v", integrity, err)
	}
	db.Close()

	s := mustOpen(t, path)
	for _, i := range committed {
		if _, found, err := s.Lookup(context.Background(), key(i)); err != nil || !found {
			t.Fatalf("committed triplet %d lost after kill -9 (found=%v err=%v)", i, found, err)
		}
	}
	t.Logf("%d committed triplets all present after kill -9", len(committed))
}

func TestCloseLeavesNoWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 3000 {
		wg.Go(func() { mustAttempt(t, s, key(i), t0) })
	}
	wg.Wait()
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL while running (%v): the test proves nothing", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("WAL of %d bytes left after a clean close", fi.Size())
	}
	s2 := mustOpen(t, path)
	if _, found, _ := s2.Lookup(context.Background(), key(2999)); !found {
		t.Error("triplet lost across a clean close")
	}
}

// TestIndexAgreesWithDatabase runs attempts, touches and purges, and
// checks that the in-memory index says what the database says, while
// running and after a restart (when the index is filled from the file).
func TestIndexAgreesWithDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 500
	for i := range n {
		mustAttempt(t, s, key(i), t0)
		if i%2 == 0 {
			mustAttempt(t, s, key(i), t0.Add(10*time.Minute))
		}
		if i%5 == 0 {
			s.Touch(key(i), t0.Add(20*24*time.Hour))
		}
	}
	waitIdle(t, s)
	// Purge the unverified (odd) ones and the passed ones not touched.
	if _, err := s.Purge(ctx, testRules, t0.Add(36*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store, when string) {
		t.Helper()
		if !s.ix.ready.Load() {
			t.Fatalf("%s: index not filled", when)
		}
		for i := range n {
			k := key(i)
			want, wantFound, err := scanRecord(s.r.QueryRow(selTripletSQL, k.Client, k.Sender, k.Recipient))
			if err != nil {
				t.Fatal(err)
			}
			got, found, _ := s.ix.triplet(s.ix.hash(k))
			if found != wantFound || found && got != toMem(want) {
				t.Fatalf("%s: triplet %d: index %v %+v, database %v %+v", when, i, found, got.record(), wantFound, want)
			}
			if wantFound != (i%10 == 0) {
				t.Fatalf("%s: triplet %d found=%v after the purge", when, i, wantFound)
			}
			var passes int
			var last int64
			err = s.r.QueryRow(selClientSQL, k.Client).Scan(&passes, &last)
			wantClient := greylist.ClientRecord{Passes: passes, LastSeen: fromMS(last)}
			gotClient, found, _ := s.ix.client(k.Client)
			if found != (err == nil) || found && gotClient != wantClient {
				t.Fatalf("%s: client %s: index %v %+v, database %v %+v", when, k.Client, found, gotClient, err, wantClient)
			}
		}
	}
	check(s, "running")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, path)
	<-s2.fillDone
	check(s2, "after reopening")
}

// TestIndexFillKeepsNewerWrites: what is written while the index fills
// wins over the older rows the fill reads.
func TestIndexFillKeepsNewerWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { mustAttempt(t, s, key(i), t0) })
	}
	wg.Wait()
	s.Close()

	s2 := mustOpen(t, path)
	// Race the fill: pass some triplets, purge nothing, then compare.
	for i := 0; i < n; i += 97 {
		if res := mustAttempt(t, s2, key(i), t0.Add(10*time.Minute)); res.Outcome != greylist.Passed {
			t.Fatalf("triplet %d: %v, want passed", i, res.Outcome)
		}
	}
	<-s2.fillDone
	for i := 0; i < n; i += 97 {
		rec, found, _ := s2.Lookup(context.Background(), key(i))
		if !found || !rec.Passed() {
			t.Fatalf("triplet %d: the fill brought back its older record", i)
		}
	}
	if rec, found, _ := s2.Lookup(context.Background(), key(1)); !found || rec.Passed() {
		t.Fatalf("triplet 1: %v %+v, want found and waiting", found, rec)
	}
}

// TestNewFileDatabasePageSize: a new database file gets greymilter's page
// size and stays in WAL mode; an existing one keeps the size it has.
func TestNewFileDatabasePageSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	s := mustOpen(t, path)
	var size int
	var mode string
	if err := s.r.QueryRow("PRAGMA page_size").Scan(&size); err != nil || size != pageSize {
		t.Errorf("page size %d (%v), want %d", size, err, pageSize)
	}
	if err := s.r.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal mode %q (%v), want wal", mode, err)
	}

	old := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite3", "file:"+old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA page_size = 8192; VACUUM; CREATE TABLE keep (x)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = mustOpen(t, old)
	if err := s.r.QueryRow("PRAGMA page_size").Scan(&size); err != nil || size != 8192 {
		t.Errorf("existing database: page size %d (%v), want its own 8192", size, err)
	}
}

// TestCountsAndSummary: decision counts and the summary read back what was
// written, on a file and in memory (where the writer's connection, the
// only one, answers the reads).
func TestCountsAndSummary(t *testing.T) {
	for name, path := range map[string]string{"memory": ":memory:", "file": filepath.Join(t.TempDir(), "g.db")} {
		t.Run(name, func(t *testing.T) {
			s := mustOpen(t, path)
			<-s.fillDone
			ctx := context.Background()
			hour := t0.Truncate(time.Hour).UTC()
			in := []greylist.Count{{Hour: hour, Action: "greylist", Reason: "new", N: 3}, {Hour: hour, Action: "pass", Reason: "passed", N: 2}}
			if err := s.AddCounts(ctx, in); err != nil {
				t.Fatal(err)
			}
			if err := s.AddCounts(ctx, in[:1]); err != nil {
				t.Fatal(err)
			}
			got, err := s.Counts(ctx, hour)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprint([]greylist.Count{{Hour: hour, Action: "greylist", Reason: "new", N: 6}, in[1]}); fmt.Sprint(got) != want {
				t.Errorf("counts %v, want %v", got, want)
			}
			mustAttempt(t, s, key(1), t0)
			mustAttempt(t, s, key(2), t0)
			mustAttempt(t, s, key(2), t0.Add(10*time.Minute))
			sum, err := s.Summary(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if sum != (greylist.Summary{Triplets: 2, Passed: 1, Clients: 1, AutoWhitelisted: 1}) {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}

// TestFailedOperationFailsAlone: an operation that fails after writing is
// rolled back, the operations batched with it commit, and the writer goes
// on.
func TestFailedOperationFailsAlone(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "g.db"))
	<-s.fillDone
	ctx := context.Background()
	bad := key(999)
	failing := func(c *sql.Conn) error {
		if _, err := s.upTriplet.Exec(bad.Client, bad.Sender, bad.Recipient, 1, 1, 0, 1); err != nil {
			return err
		}
		_, err := c.ExecContext(ctx, "INSERT INTO no_such_table VALUES (1)")
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 41)
	for round := range 2 {
		for i := range 20 {
			wg.Go(func() {
				_, err := s.Attempt(ctx, key(round*100+i), testRules, t0)
				errs <- err
			})
		}
		if err := s.do(ctx, failing); err == nil {
			t.Fatal("the failing operation succeeded")
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("an operation beside the failing one: %v", err)
		}
	}
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM triplets WHERE client = ?`, bad.Client).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the failed operation's write: %d rows (%v), want none", n, err)
	}
	if err := s.r.QueryRow(`SELECT count(*) FROM triplets`).Scan(&n); err != nil || n != 40 {
		t.Fatalf("%d triplets (%v), want the 40 attempts", n, err)
	}
	mustAttempt(t, s, key(500), t0)
}
