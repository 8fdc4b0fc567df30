package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// Storage faults, for real, against the real binary, asked through its
// policy server as Postfix would: what the MTA is answered, how fast, that
// greymilter stays alive, and that it heals without a restart.

// The answers a policy client gets: a greylisting deferral, and the
// --on-error tempfail of a decision that could not be written.
const (
	policyGreylisted = "action=DEFER_IF_PERMIT 4.7.1 "
	policyTempfail   = "action=DEFER_IF_PERMIT 4.3.0 "
)

// policyTriplets sends policy requests for new triplets of one test.
type policyTriplets struct {
	addr  string
	name  string
	n     atomic.Int64
	worst time.Duration // slowest answer so far
}

// ask sends one request for a new triplet (or the i-th again, i >= 0)
// and returns the action line and how long the answer took.
func (p *policyTriplets) ask(t *testing.T, i int64) (string, time.Duration) {
	t.Helper()
	if i < 0 {
		i = p.n.Add(1)
	}
	c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("policy server %s: %v", p.addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.60\n"+
		"client_name=mail.sender.example\nhelo_name=mail.sender.example\nsender=alice-%s@sender.example\nrecipient=rcpt-%d@%s\n\n",
		p.name, i, harness.Domain)
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if err != nil {
		t.Fatalf("policy answer: %v", err)
	}
	p.worst = max(p.worst, took)
	return strings.TrimSpace(line), took
}

// until asks for new triplets until the answer starts with want, for at
// most d; it returns the last answer and fails the test on timeout.
func (p *policyTriplets) until(t *testing.T, want string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		a, _ := p.ask(t, -1)
		if strings.HasPrefix(a, want) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still %q, want %q", d, a, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tmpfs mounts a tmpfs of size bytes on a new directory, open to all,
// and unmounts it when the test ends.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0777", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for n := 1024; n > 0; n /= 2 { // the last blocks' crumbs
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

// countLog counts the log lines that contain s.
func countLog(g *harness.GreymilterProcess, s string) int { return strings.Count(g.Log(), s) }

const (
	faultStarted = "the database cannot be written"
	faultHealed  = "the database can be written again"
)

// TestT65FullDiskAndReadOnly: greymilter runs as nobody (--user: file
// modes bind it) on a small tmpfs. A full disk makes new triplets tempfail within the
// decision deadline, quickly; read-only made at the same time keeps the
// reopened connection read-only (SQLite's handle from before the fix
// would stay so for ever); freeing the disk and making the file writable
// again heals it without a restart, with one log line per episode, and
// what was committed before the fault survives a restart. Started again
// with the file read-only, it refuses with a clear message.
func TestT65FullDiskAndReadOnly(t *testing.T) {
	harness.Require(t, "mount", "umount")
	dir := tmpfs(t, 1<<20)
	db := filepath.Join(dir, "g.db")
	for _, d := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		os.Chmod(d, 0o755) // the test's temp dirs, for nobody to reach the tmpfs
	}
	// A fixed port: a restart below binds the same one.
	gm := harness.Greymilter(t, "--user", "nobody", "--db", db, "--policy-socket", fmt.Sprintf("inet:127.0.0.1:%d", harness.FreePort(t)),
		"--delay", "2s", "--decision-timeout", "3s", "--dns-timeout", "500ms", "--metrics-listen", "127.0.0.1:0")
	p := &policyTriplets{addr: gm.PolicyAddr(), name: "t65"}

	if a, _ := p.ask(t, 0); !strings.HasPrefix(a, policyGreylisted) {
		t.Fatalf("before the fault: %q", a)
	}
	firstSeen := time.Now()

	// Read-only while running: the open file is still written (Unix
	// checks modes at open), so mail goes on being policyGreylisted.
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		if err := os.Chmod(f, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if a, _ := p.ask(t, -1); !strings.HasPrefix(a, policyGreylisted) {
		t.Fatalf("read-only while open: %q, want policyGreylisted still", a)
	}

	// Disk full: new triplets tempfail, each within the deadline.
	fill(t, filepath.Join(dir, "filler"))
	p.worst = 0
	p.until(t, policyTempfail, 20*time.Second)
	for range 20 {
		a, took := p.ask(t, -1)
		if !strings.HasPrefix(a, policyTempfail) {
			t.Fatalf("disk full: %q, want the --on-error tempfail", a)
		}
		if took > time.Second {
			t.Errorf("disk full: answered in %v, want well under the 3s deadline", took)
		}
	}
	t.Logf("disk full: worst answer %v", p.worst)
	worst := p.worst

	// Disk freed, file still read-only for nobody: the retry reopens the
	// connection read-only, and it stays a fault.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // more than the longest backoff
	if a, _ := p.ask(t, -1); !strings.HasPrefix(a, policyTempfail) {
		t.Fatalf("disk freed, file read-only: %q, want still tempfail", a)
	}

	// Writable again: it heals by itself.
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		os.Chmod(f, 0o644)
	}
	start := time.Now()
	p.until(t, policyGreylisted, 10*time.Second)
	t.Logf("healed %v after the file was writable again; worst answer during the fault %v", time.Since(start).Round(time.Millisecond), max(worst, p.worst))
	if exited, err := gm.Exited(); exited {
		t.Fatalf("greymilter died: %v", err)
	}
	if v, ok := gm.Metric("greymilter_store_writable"); !ok || v != 1 {
		t.Errorf("greymilter_store_writable %v (%v), want 1 once healed", v, ok)
	}
	if v, _ := gm.Metric("greymilter_store_write_faults_total"); v != 1 {
		t.Errorf("greymilter_store_write_faults_total %v, want 1", v)
	}
	if n := countLog(gm, faultStarted); n != 1 {
		t.Errorf("%d log lines %q, want 1 for the episode", n, faultStarted)
	}
	if n := countLog(gm, faultHealed); n != 1 {
		t.Errorf("%d log lines %q, want 1", n, faultHealed)
	}

	// Nothing committed was lost: the first triplet, deferred before the
	// fault, passes after its delay, after a restart.
	gm.Stop()
	gm.Restart()
	time.Sleep(time.Until(firstSeen.Add(2500 * time.Millisecond)))
	if a, _ := p.ask(t, 0); strings.HasPrefix(a, "action=DEFER") {
		t.Errorf("the triplet from before the fault, after its delay: %q, want it to pass", a)
	}

	// Read-only at start: a clear refusal, exit status 2, not "ready".
	gm.Stop()
	os.Chmod(db, 0o444)
	out, code := gm.Exec()
	// --user's own check may see it first ("not writable by --user"),
	// else the store's write test ("cannot be written").
	if code != 2 || !strings.Contains(out, db) || !(strings.Contains(out, "not writable") || strings.Contains(out, "cannot be written")) {
		t.Errorf("started on a read-only file: exit %d, %q; want exit 2 naming the file and the cause", code, out)
	}
}

// sqlite3 runs the sqlite3 shell on db with script and returns its output.
func sqlite3(t *testing.T, db, script string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", db)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", db, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestT66LockedByAnotherProcess: an outside sqlite3 holds BEGIN EXCLUSIVE.
// New triplets are answered per --on-error within --decision-timeout (not
// after SQLite's busy timeout), known ones still pass at once, and when
// the lock is released decisions are written again, without restart.
func TestT66LockedByAnotherProcess(t *testing.T) {
	harness.Require(t, "sqlite3")
	gm := harness.Greymilter(t, "--policy-socket", "inet:127.0.0.1:0", "--delay", "1s", "--decision-timeout", "2s", "--dns-timeout", "500ms", "--metrics-listen", "127.0.0.1:0")
	p := &policyTriplets{addr: gm.PolicyAddr(), name: "t66"}
	if a, _ := p.ask(t, 0); !strings.HasPrefix(a, policyGreylisted) {
		t.Fatalf("first: %q", a)
	}
	time.Sleep(1200 * time.Millisecond)
	if a, _ := p.ask(t, 0); strings.HasPrefix(a, "action=DEFER") {
		t.Fatalf("after the delay: %q", a)
	}

	lock := exec.Command("sqlite3", gm.DB)
	stdin, err := lock.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lock.Stdout, lock.Stderr = os.Stderr, os.Stderr
	if err := lock.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Process.Kill(); lock.Wait() })
	fmt.Fprintln(stdin, "BEGIN EXCLUSIVE; INSERT INTO decision_counts VALUES (-2, 'lock', 'test', 1); SELECT 'locked';")
	time.Sleep(500 * time.Millisecond)

	for range 3 {
		a, took := p.ask(t, -1)
		if !strings.HasPrefix(a, policyTempfail) {
			t.Errorf("locked: %q, want the --on-error tempfail", a)
		}
		if took > 2*time.Second {
			t.Errorf("locked: answered in %v, past --decision-timeout 2s", took)
		}
	}
	if a, took := p.ask(t, 0); strings.HasPrefix(a, "action=DEFER") || took > 500*time.Millisecond {
		t.Errorf("known triplet while locked: %q in %v, want a pass at once", a, took)
	}
	t.Logf("locked: worst answer %v", p.worst)
	if v, _ := gm.Metric("greymilter_store_writable"); v != 0 {
		t.Errorf("greymilter_store_writable %v while locked, want 0", v)
	}

	fmt.Fprintln(stdin, "ROLLBACK;")
	stdin.Close()
	lock.Wait()
	a, took := p.ask(t, -1)
	if !strings.HasPrefix(a, policyGreylisted) || took > time.Second {
		t.Errorf("lock released: %q in %v, want greylisted at once", a, took)
	}
	if exited, err := gm.Exited(); exited {
		t.Fatalf("greymilter died: %v", err)
	}
	if n := countLog(gm, faultStarted); n != 1 {
		t.Errorf("%d log lines %q, want 1 for the episode", n, faultStarted)
	}
	if n := countLog(gm, faultHealed); n != 1 {
		t.Errorf("%d log lines %q, want 1", n, faultHealed)
	}
}

// TestT67DatabaseDeleted: the database file is deleted while greymilter
// runs. It says so (error log, metric) and writes the file again from the
// database it has open, so that what it knew and what it writes next are
// in the file at its path, as a restart shows.
func TestT67DatabaseDeleted(t *testing.T) {
	harness.Require(t, "sqlite3")
	gm := harness.Greymilter(t, "--policy-socket", fmt.Sprintf("inet:127.0.0.1:%d", harness.FreePort(t)), "--delay", "2s", "--metrics-listen", "127.0.0.1:0")
	p := &policyTriplets{addr: gm.PolicyAddr(), name: "t67"}
	if a, _ := p.ask(t, 0); !strings.HasPrefix(a, policyGreylisted) {
		t.Fatalf("first: %q", a)
	}
	firstSeen := time.Now()
	if err := os.Remove(gm.DB); err != nil {
		t.Fatal(err)
	}
	gm.WaitRecord(func(r harness.LogRecord) bool { return strings.Contains(r["msg"], "database file was deleted") })
	gm.WaitRecord(func(r harness.LogRecord) bool { return strings.Contains(r["msg"], "deleted database file is back") })
	if v, _ := gm.Metric("greymilter_store_file_incidents_total"); v != 1 {
		t.Errorf("greymilter_store_file_incidents_total %v, want 1", v)
	}
	if v, _ := gm.Metric("greymilter_store_file_recreated_total"); v != 1 {
		t.Errorf("greymilter_store_file_recreated_total %v, want 1", v)
	}
	a, took := p.ask(t, 1)
	if !strings.HasPrefix(a, policyGreylisted) {
		t.Fatalf("after the file came back: %q", a)
	}
	t.Logf("new triplet after the file came back: %v", took)
	if exited, err := gm.Exited(); exited {
		t.Fatalf("greymilter died: %v", err)
	}
	gm.Stop()
	if n := sqlite3(t, gm.DB, "SELECT count(*) FROM triplets WHERE sender = 'alice-t67@sender.example';"); n != "2" {
		t.Errorf("the file at the path holds %s of the 2 triplets", n)
	}
	gm.Restart()
	time.Sleep(time.Until(firstSeen.Add(2500 * time.Millisecond)))
	if a, _ := p.ask(t, 0); strings.HasPrefix(a, "action=DEFER") {
		t.Errorf("the triplet from before the deletion, after its delay and a restart: %q, want a pass", a)
	}
}

// damagedSetup makes a database of 3000 passed triplets (those that
// policyTriplets named name asks for) and stops greymilter on it.
func damagedSetup(t *testing.T, name string) (*harness.GreymilterProcess, *policyTriplets) {
	t.Helper()
	gm := harness.Greymilter(t, "--policy-socket", fmt.Sprintf("inet:127.0.0.1:%d", harness.FreePort(t)))
	gm.Stop()
	now := time.Now().UnixMilli()
	sqlite3(t, gm.DB, fmt.Sprintf(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 3000)
		INSERT INTO triplets SELECT '192.0.2.0/24', 'alice-%s@sender.example', 'rcpt-' || i || '@%s', %d, %d, %d, 2 FROM c;
		PRAGMA wal_checkpoint(TRUNCATE);`, name, harness.Domain, now-60000, now, now-1000))
	return gm, &policyTriplets{addr: gm.PolicyAddr(), name: name}
}

// recoverAndCheck starts greymilter on a damaged database: without
// --db-recover it exits 2 saying what is wrong and what to do; with it,
// it moves the file aside and keeps at least keep of the 3000 triplets,
// which pass as known ones.
func recoverAndCheck(t *testing.T, gm *harness.GreymilterProcess, p *policyTriplets, keep int) {
	t.Helper()
	out, code := gm.Exec()
	if code != 2 || !strings.Contains(out, gm.DB) || !strings.Contains(out, "damaged") || !strings.Contains(out, "--db-recover") {
		t.Fatalf("damaged database: exit %d, %q; want exit 2 naming the file, the damage and --db-recover", code, out)
	}
	t.Logf("without --db-recover: %s", strings.TrimSpace(out))
	gm.Args = append(gm.Args, "--db-recover")
	gm.Restart()
	aside, _ := filepath.Glob(gm.DB + ".corrupt-*")
	if len(aside) == 0 {
		t.Errorf("no %s.corrupt-* beside the database", gm.DB)
	}
	passed := 0
	for _, i := range []int64{1, 1500, 3000} {
		a, took := p.ask(t, i)
		if !strings.HasPrefix(a, "action=DEFER") {
			passed++
		}
		if took > time.Second {
			t.Errorf("answer in %v", took)
		}
	}
	gm.Stop()
	n := sqlite3(t, gm.DB, "SELECT count(*) FROM triplets;")
	var kept int
	fmt.Sscan(n, &kept)
	t.Logf("--db-recover kept %d of 3000 triplets; %d of 3 sampled known triplets passed", kept, passed)
	if kept < keep || kept > 3000 {
		t.Errorf("--db-recover kept %d triplets, want %d to 3000", kept, keep)
	}
	if passed < 2 {
		t.Errorf("%d of 3 known triplets passed after --db-recover", passed)
	}
}

// TestT68CorruptedPage: a B-tree page of the triplets table is
// overwritten. greymilter says so at start (exit 2, what and what to do)
// rather than deferring that key range for ever; --db-recover keeps every
// row but those of the damaged page.
func TestT68CorruptedPage(t *testing.T) {
	harness.Require(t, "sqlite3")
	gm, p := damagedSetup(t, "t68")
	page := sqlite3(t, gm.DB, "SELECT pageno FROM dbstat WHERE name = 'triplets' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 10;")
	size := sqlite3(t, gm.DB, "PRAGMA page_size;")
	var pageno, pagesize int64
	fmt.Sscan(page, &pageno)
	fmt.Sscan(size, &pagesize)
	if pageno == 0 || pagesize == 0 {
		t.Fatalf("leaf page %q, page size %q", page, size)
	}
	f, err := os.OpenFile(gm.DB, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte(strings.Repeat("\xde\xad\xbe\xef", 16))
	if _, err := f.WriteAt(garbage, (pageno-1)*pagesize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	recoverAndCheck(t, gm, p, 2800)
}

// TestT69CorruptedHeader: the file's header is overwritten. greymilter
// does not exit 1 with SQLite's message but 2 with what to do, and
// --db-recover reads everything back (the rest of the file is sound).
func TestT69CorruptedHeader(t *testing.T) {
	harness.Require(t, "sqlite3")
	gm, p := damagedSetup(t, "t69")
	f, err := os.OpenFile(gm.DB, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("this is no db!!!"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	recoverAndCheck(t, gm, p, 3000)
}
