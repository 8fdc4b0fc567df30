package harness

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/sockaddr"
)

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// GreymilterBinary builds ./cmd/greymilter of this module once per test
// process and returns the path of the binary. [Main] removes it when the
// tests end.
func GreymilterBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "greymilter-e2e-")
		if build.err != nil {
			return
		}
		path := filepath.Join(build.dir, "greymilter")
		if build.err = goBuild("./cmd/greymilter", path); build.err != nil {
			return
		}
		build.path = path
	})
	if build.err != nil {
		t.Fatalf("harness: %v", build.err)
	}
	return build.path
}

// goBuild builds the command pkg of this module into path.
func goBuild(pkg, path string) error {
	// Tests run in their package's directory; find the module root
	// from there.
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("go env GOMOD: not inside a module")
	}
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}

// Main runs the tests of a package that uses the harness and removes what
// the harness leaves for the whole test process (the built binary). Call it
// from TestMain: func TestMain(m *testing.M) { harness.Main(m) }; m may
// be wrapped by another helper's, such as pgtest.Wrap(m).
//
// End-to-end tests spend their time waiting (for greymilter's delay, for
// Postfix), not computing, so unless -test.parallel is given Main lets
// [Parallel] of them run at once instead of GOMAXPROCS.
func Main(m interface{ Run() int }) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(Parallel))
	}
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// Parallel is how many parallel tests [Main] runs at once by default.
const Parallel = 8

// GreymilterProcess is a greymilter started by [Greymilter].
type GreymilterProcess struct {
	Network string   // "tcp", or "unix" for a unix socket
	Addr    string   // where greymilter listens: "127.0.0.1:PORT", or the socket's path
	Socket  string   // the same for Postfix's smtpd_milters: "inet:127.0.0.1:PORT" or "unix:PATH"
	DB      string   // the SQLite file, kept across restarts
	LogFile string   // stdout and stderr of every run, appended
	Args    []string // every argument greymilter is started with
	Env     []string // KEY=VALUE added to the environment of the next start

	t   testing.TB
	bin string
	cmd *exec.Cmd
	// discover: the milter listens on port 0; start learns the port.
	discover bool
	done     chan struct{} // closed when cmd has exited
	err      error         // cmd's exit status, once done is closed
}

// Greymilter starts the real greymilter binary listening on a free loopback
// port with a file database in the test's temp dir:
//
//	greymilter -s inet:127.0.0.1:PORT --db DIR/greymilter.db [--dns 127.0.0.1:DEAD] [--allow-root] [-v] ARGS...
//
// and waits until it accepts connections. Flags in args come last, so they
// win over the harness's (e.g. --db :memory:). A socket given in args (-s,
// --socket, in any form greymilter takes) replaces the harness's, and
// [GreymilterProcess.Socket] names it. Unless args name DNS servers
// (--dns), greymilter is given a loopback port where no DNS server listens:
// no test asks the outside world, and lookups (SPF, reverse names) fail at
// once so that their steps abstain. Run as root, greymilter is given
// --allow-root unless args say --user or --allow-root. Unless args set the
// verbosity, -v logs one line per decision. The process is stopped with SIGTERM
// when the test ends; if the test failed its log is written to the test
// log.
func Greymilter(t testing.TB, args ...string) *GreymilterProcess {
	t.Helper()
	dir := t.TempDir()
	g := &GreymilterProcess{
		DB:      filepath.Join(dir, "greymilter.db"),
		LogFile: filepath.Join(dir, "greymilter.log"),
		t:       t,
	}
	socket, ok := flagValue(args, "-s", "--socket")
	if !ok {
		// Port 0: greymilter binds a port nobody holds and logs which; a
		// port chosen here could be taken by another test before it binds.
		socket = "inet:127.0.0.1:0"
		args = append([]string{"-s", socket}, args...)
		g.discover = true
	}
	a, err := sockaddr.Parse(socket)
	if err != nil {
		t.Fatalf("harness: greymilter: %v", err)
	}
	// net.Dial wants "tcp" for both families.
	g.Network, g.Addr = "tcp", a.Address
	if a.Network == "unix" {
		g.Network = "unix"
	}
	g.Socket = "inet:" + g.Addr
	if g.Network == "unix" {
		g.Socket = "unix:" + g.Addr
	}
	if _, ok := flagValue(args, "--dns"); !ok {
		args = append([]string{"--dns", DeadDNS(t)}, args...)
	}
	if os.Geteuid() == 0 && !hasFlag(args, "--user", "--allow-root") {
		// Tests run as root; greymilter refuses root unless told.
		args = append([]string{"--allow-root"}, args...)
	}
	if !setsVerbosity(args) {
		args = append([]string{"-v"}, args...)
	}
	g.Args = append([]string{"--db", g.DB}, args...)
	g.bin = GreymilterBinary(t)
	t.Cleanup(func() {
		if g.running() {
			g.Stop()
		}
		if t.Failed() {
			t.Logf("greymilter log %s:\n%s", g.LogFile, g.Log())
		}
	})
	g.start()
	return g
}

// flagValue returns the last value given in args to a flag of one of the
// names, as "--name value" or "--name=value".
func flagValue(args []string, names ...string) (value string, ok bool) {
	for i, a := range args {
		for _, n := range names {
			switch {
			case a == n && i+1 < len(args):
				value, ok = args[i+1], true
			case strings.HasPrefix(a, n+"="):
				value, ok = strings.TrimPrefix(a, n+"="), true
			}
		}
	}
	return value, ok
}

// hasFlag reports whether args give one of the flags, with or without a
// value.
func hasFlag(args []string, names ...string) bool {
	for _, a := range args {
		for _, n := range names {
			if a == n || strings.HasPrefix(a, n+"=") {
				return true
			}
		}
	}
	return false
}

// setsVerbosity tells whether args give -v, -vv... or --verbose.
func setsVerbosity(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "--verbose") || strings.HasPrefix(a, "-v") && strings.Trim(a[1:], "v") == "" {
			return true
		}
	}
	return false
}

// DeadDNS returns a loopback UDP address where nothing listens: a query
// sent there is refused at once.
func DeadDNS(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: dead DNS address: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

func (g *GreymilterProcess) start() {
	g.t.Helper()
	var logStart int64 // where this start's lines begin in the log file
	if fi, err := os.Stat(g.LogFile); err == nil {
		logStart = fi.Size()
	}
	logf, err := os.OpenFile(g.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		g.t.Fatalf("harness: greymilter log: %v", err)
	}
	defer logf.Close()
	g.cmd = exec.Command(g.bin, g.Args...)
	if g.Env != nil {
		g.cmd.Env = append(os.Environ(), g.Env...)
	}
	g.cmd.Stdout = logf
	g.cmd.Stderr = logf
	// Do not outlive a test binary that dies without running its cleanups.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		g.t.Fatalf("harness: start greymilter: %v", err)
	}
	g.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		g.err = cmd.Wait()
		close(done)
	}(g.cmd, g.done)

	deadline := time.Now().Add(20 * time.Second)
	// Wait for this start's "listening" line: it comes once every socket
	// is bound, so a port someone else holds is not mistaken for ours.
	for {
		select {
		case <-g.done:
			g.t.Fatalf("harness: greymilter %s exited at start: %v\n%s", strings.Join(g.Args, " "), g.err, g.Log())
		default:
		}
		if addr, ok := listeningOn(g.logSince(logStart)); ok {
			if g.discover {
				g.Addr, g.Socket, g.discover = addr, "inet:"+addr, false
				for i, a := range g.Args {
					if a == "inet:127.0.0.1:0" {
						g.Args[i] = g.Socket // a restart binds the same port
					}
				}
			}
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("harness: greymilter did not say it listens after 20s\n%s", g.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		select {
		case <-g.done:
			g.t.Fatalf("harness: greymilter %s exited at start: %v\n%s", strings.Join(g.Args, " "), g.err, g.Log())
		default:
		}
		c, err := net.DialTimeout(g.Network, g.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("harness: greymilter does not listen on %s after 20s: %v\n%s", g.Addr, err, g.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logSince returns the log from byte offset on ("" while there is none).
func (g *GreymilterProcess) logSince(offset int64) string {
	b, err := os.ReadFile(g.LogFile)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// listeningOn finds greymilter's "listening" line for its milter and
// returns the TCP address in it (empty for a unix socket).
func listeningOn(log string) (addr string, ok bool) {
	return serviceAddr(log, "milter")
}

// serviceAddr finds the "listening" line of a greymilter service (milter,
// policy), in text or JSON, and returns its TCP address (empty for a unix
// socket).
func serviceAddr(log, service string) (addr string, ok bool) {
	for _, line := range strings.Split(log, "\n") {
		rec := ParseLogRecord(line)
		if rec == nil || rec["msg"] != "listening" {
			continue
		}
		if rest, found := strings.CutPrefix(rec["service"], service+" inet:"); found {
			return rest, true
		}
		if strings.HasPrefix(rec["service"], service+" ") {
			return "", true
		}
	}
	return "", false
}

// PolicyAddr returns the address greymilter's policy server listens on, as
// its log says: start it with --policy-socket inet:127.0.0.1:0 to have a
// port nobody else can take first.
func (g *GreymilterProcess) PolicyAddr() string {
	g.t.Helper()
	addr, ok := serviceAddr(g.Log(), "policy")
	if !ok || addr == "" {
		g.t.Fatalf("harness: greymilter logs no policy server on TCP\n%s", g.Log())
	}
	return addr
}

// PID is the process id of the running greymilter (to read /proc/PID or
// set its limits with prlimit).
func (g *GreymilterProcess) PID() int { return g.cmd.Process.Pid }

// Exited reports whether greymilter has exited, and its exit status then.
func (g *GreymilterProcess) Exited() (bool, error) {
	select {
	case <-g.done:
		return true, g.err
	default:
		return false, nil
	}
}

// MetricsURL returns the base URL of greymilter's metrics server
// ("http://127.0.0.1:PORT"), as its log says: start it with
// --metrics-listen 127.0.0.1:0.
func (g *GreymilterProcess) MetricsURL() string {
	g.t.Helper()
	for _, line := range strings.Split(g.Log(), "\n") {
		if _, rest, found := strings.Cut(line, `service="metrics http://`); found && strings.Contains(line, "msg=listening") {
			addr, _, _ := strings.Cut(rest, "/")
			return "http://" + addr
		}
	}
	g.t.Fatalf("harness: greymilter logs no metrics server\n%s", g.Log())
	return ""
}

func (g *GreymilterProcess) running() bool {
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// Kill kills greymilter with SIGKILL, as a crash would, and waits for it to
// be gone.
func (g *GreymilterProcess) Kill() {
	g.t.Helper()
	_ = g.cmd.Process.Kill()
	<-g.done
}

// Signal sends sig to the running greymilter (SIGHUP to reload its lists).
func (g *GreymilterProcess) Signal(sig os.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatalf("signal %v to greymilter: %v", sig, err)
	}
}

// Stop sends SIGTERM and waits up to 10 seconds for greymilter to exit. It
// returns the exit status (nil for a clean exit); a greymilter that does not
// exit in time is killed and fails the test.
func (g *GreymilterProcess) Stop() error {
	g.t.Helper()
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
		return g.err
	case <-time.After(10 * time.Second):
		g.Kill()
		g.t.Errorf("harness: greymilter did not exit within 10s of SIGTERM")
		return g.err
	}
}

// Restart starts greymilter again, stopped or killed before, with the same
// arguments, port and database.
func (g *GreymilterProcess) Restart() {
	g.t.Helper()
	if g.running() {
		g.t.Fatalf("harness: restart of a greymilter that still runs")
	}
	g.start()
}

// Log returns what greymilter wrote so far, over all its runs.
func (g *GreymilterProcess) Log() string {
	b, err := os.ReadFile(g.LogFile)
	if err != nil {
		return fmt.Sprintf("(no greymilter log: %v)", err)
	}
	return string(b)
}

// Records returns greymilter's log lines parsed as slog text records.
func (g *GreymilterProcess) Records() []LogRecord {
	var recs []LogRecord
	for _, line := range strings.Split(g.Log(), "\n") {
		if r := ParseLogRecord(line); r != nil {
			recs = append(recs, r)
		}
	}
	return recs
}

// WaitRecords waits up to 10 seconds until n log records match, and returns
// all those that match, oldest first; the test fails if fewer come. A
// decision's line may be written a moment after the MTA got the reply.
func (g *GreymilterProcess) WaitRecords(match func(LogRecord) bool, n int) []LogRecord {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var recs []LogRecord
		for _, r := range g.Records() {
			if match(r) {
				recs = append(recs, r)
			}
		}
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("harness: %d matching greymilter log records after 10s, want %d; log:\n%s", len(recs), n, g.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitRecord waits up to 10 seconds for a log record that match accepts and
// returns the first one; the test fails if none comes.
func (g *GreymilterProcess) WaitRecord(match func(LogRecord) bool) LogRecord {
	g.t.Helper()
	return g.WaitRecords(match, 1)[0]
}

// DecisionFor matches the log records of decisions (msg=decision) about
// recipient.
func DecisionFor(recipient string) func(LogRecord) bool {
	return func(r LogRecord) bool {
		return r["msg"] == "decision" && strings.EqualFold(strings.Trim(r["recipient"], "<>"), recipient)
	}
}
