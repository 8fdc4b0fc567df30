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
	"github.com/greymilter/greymilter/greylist/storetest"
)

// The conformance suite's clock, rules and triplets serve the tests of
// what is SQLite's own.
var (
	t0          = storetest.T0
	testRules   = storetest.Rules
	key         = storetest.Key
	mustAttempt = storetest.Attempt
)

func mustOpen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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
			want, wantFound, err := scanRecord(s.r.Load().QueryRow(selTripletSQL, k.Client, k.Sender, k.Recipient))
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
			err = s.r.Load().QueryRow(selClientSQL, k.Client).Scan(&passes, &last)
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
	if err := s.r.Load().QueryRow("PRAGMA page_size").Scan(&size); err != nil || size != pageSize {
		t.Errorf("page size %d (%v), want %d", size, err, pageSize)
	}
	if err := s.r.Load().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
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
	if err := s.r.Load().QueryRow("PRAGMA page_size").Scan(&size); err != nil || size != 8192 {
		t.Errorf("existing database: page size %d (%v), want its own 8192", size, err)
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
	if err := s.r.Load().QueryRow(`SELECT count(*) FROM triplets WHERE client = ?`, bad.Client).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the failed operation's write: %d rows (%v), want none", n, err)
	}
	if err := s.r.Load().QueryRow(`SELECT count(*) FROM triplets`).Scan(&n); err != nil || n != 40 {
		t.Fatalf("%d triplets (%v), want the 40 attempts", n, err)
	}
	mustAttempt(t, s, key(500), t0)
}

// waitIdle waits until the writer has run the touches queued: once the
// writer took them all, a no-op queued behind commits after them.
func waitIdle(t *testing.T, s *Store) {
	t.Helper()
	for len(s.touch) > 0 {
		time.Sleep(time.Millisecond)
	}
	if err := s.AddCounts(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}
