// Package pgtest runs throwaway PostgreSQL clusters for tests: initdb and
// pg_ctl from Debian's server packages, in a temporary directory owned by
// the postgres user, listening on a loopback port picked at run time.
//
// A test that needs a database calls [Shared] (one cluster per test
// binary, stopped by [Main]) and [Server.NewDatabase]; a test that stops
// or freezes its server calls [New] for one of its own. Without the
// server binaries (or root, to run them as postgres) the test is skipped,
// or failed under CI=true.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greymilter/greymilter/test/harness"
)

// Server is one PostgreSQL cluster.
type Server struct {
	Port int
	dir  string // owned by postgres: data/, the socket and the log
	bin  string
	pid  int // the postmaster's, while it runs
	uid  int // postgres, or -1 when not running as root
	gid  int
}

// binDir finds the newest installed PostgreSQL server's binaries.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", errors.New("no PostgreSQL server in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
	}
	sort.Slice(found, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(found[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(found[j])))
		return vi < vj
	})
	return found[len(found)-1], nil
}

// require skips or fails t (under CI) when no server can be run.
func require(t testing.TB) string {
	t.Helper()
	bin, err := binDir()
	if err == nil && os.Geteuid() == 0 {
		if _, err = user.Lookup("postgres"); err != nil {
			err = fmt.Errorf("no postgres user: %w", err)
		}
	}
	if err == nil {
		return bin
	}
	msg := "pgtest: PostgreSQL tests need " + err.Error()
	if harness.CI() {
		t.Fatal(msg + " (CI=true: missing dependencies fail the run)")
	}
	t.Skip(msg + " (set CI=true to make this a failure)")
	return ""
}

// New starts a cluster of the test's own, removed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := start(require(t), func() int { return harness.FreePort(t) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Remove)
	return s
}

// template is a cluster made by initdb once per test binary, copied for
// every server: initdb takes seconds, a copy a fraction of one.
var template struct {
	once sync.Once
	dir  string
	err  error
}

// templateData returns the data directory of the template cluster, made
// with s's binaries and user.
func templateData(s *Server) (string, error) {
	template.once.Do(func() {
		t := &Server{bin: s.bin, uid: s.uid, gid: s.gid}
		if template.dir, template.err = t.mkdir(); template.err != nil {
			return
		}
		t.dir = template.dir
		if out, err := t.run("initdb", "-D", t.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
			template.err = fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
		}
	})
	return filepath.Join(template.dir, "data"), template.err
}

var shared struct {
	mu  sync.Mutex
	s   *Server
	err error
}

// Shared returns the test binary's shared cluster, starting it at the first
// call. [Main] removes it when the tests end.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := require(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil && shared.err == nil {
		shared.s, shared.err = start(bin, func() int { return harness.FreePort(t) })
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.s
}

// Main runs the tests of a package that uses pgtest and then removes what
// it keeps for the whole test binary (the shared cluster, the template):
// func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) { os.Exit(Wrap(m).Run()) }

// Wrap returns m whose Run also removes, after the tests, what pgtest
// keeps for the whole test binary; for a TestMain that has its own runner,
// such as harness.Main(pgtest.Wrap(m)).
func Wrap(m interface{ Run() int }) interface{ Run() int } { return wrapped{m} }

type wrapped struct{ m interface{ Run() int } }

func (w wrapped) Run() int {
	code := w.m.Run()
	shared.mu.Lock()
	if shared.s != nil {
		shared.s.Remove()
	}
	shared.mu.Unlock()
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	return code
}

func start(bin string, port func() int) (*Server, error) {
	s := &Server{bin: bin, uid: -1, gid: -1}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		s.uid, _ = strconv.Atoi(u.Uid)
		s.gid, _ = strconv.Atoi(u.Gid)
	}
	dir, err := s.mkdir()
	if err != nil {
		return nil, err
	}
	s.dir = dir
	tmpl, err := templateData(s)
	if err != nil {
		s.Remove()
		return nil, err
	}
	if out, err := exec.Command("cp", "-a", tmpl, s.data()).CombinedOutput(); err != nil {
		s.Remove()
		return nil, fmt.Errorf("pgtest: copying the template cluster: %w\n%s", err, out)
	}
	// A port free a moment ago may be taken by the time the server binds
	// it: try a few.
	for range 5 {
		s.Port = port()
		if err = s.Start(); err == nil {
			return s, nil
		}
	}
	s.Remove()
	return nil, err
}

// mkdir makes a temporary directory owned by the server's user. Not
// t.TempDir: its parents are private to root, and the server runs as
// postgres.
func (s *Server) mkdir() (string, error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	if s.uid >= 0 {
		if err := os.Chown(dir, s.uid, s.gid); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("pgtest: %w", err)
		}
	}
	return dir, nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// run runs one of the server's programs as postgres.
func (s *Server) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, prog)
	var cmd *exec.Cmd
	if s.uid >= 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

// Start starts the server (again) on its port and data, and waits until it
// accepts connections.
func (s *Server) Start() error {
	opts := strings.Join([]string{
		"-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.dir,
		// Throwaway data: durability costs time and buys nothing.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB",
	}, " ")
	out, err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", s.data(), "-l", filepath.Join(s.dir, "server.log"), "-o", opts)
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl start on port %d: %w\n%s\n%s", s.Port, err, out, s.Log())
	}
	b, err := os.ReadFile(filepath.Join(s.data(), "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if s.pid, err = strconv.Atoi(strings.TrimSpace(first)); err != nil {
		return fmt.Errorf("pgtest: postmaster.pid: %w", err)
	}
	return nil
}

// Stop stops the server (fast shutdown: sessions are cut) and waits until
// it is gone.
func (s *Server) Stop() error {
	if s.pid == 0 {
		return nil
	}
	if out, err := s.run("pg_ctl", "stop", "-w", "-m", "fast", "-D", s.data()); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	s.pid = 0
	return nil
}

// Freeze stops the postmaster and every process of it with SIGSTOP: its
// port still accepts connections, but nothing answers.
func (s *Server) Freeze() error {
	// The postmaster first, so that it starts no child after the list is made.
	if err := syscall.Kill(s.pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pgtest: SIGSTOP %d: %w", s.pid, err)
	}
	for _, p := range children(s.pid) {
		// A child listed may have ended since (a backend whose client
		// left): there is nothing of it left to stop.
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("pgtest: SIGSTOP %d: %w", p, err)
		}
	}
	return nil
}

// Thaw resumes a frozen server with SIGCONT.
func (s *Server) Thaw() error {
	pids := append(children(s.pid), s.pid)
	var errs []error
	for _, p := range pids {
		if err := syscall.Kill(p, syscall.SIGCONT); err != nil && (p == s.pid || !errors.Is(err, syscall.ESRCH)) {
			errs = append(errs, fmt.Errorf("pgtest: SIGCONT %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// Remove kills the server, thawed first if frozen, and deletes its files.
func (s *Server) Remove() {
	if s.pid != 0 {
		s.Thaw()
		// SIGQUIT: immediate shutdown; the postmaster takes its children.
		syscall.Kill(s.pid, syscall.SIGQUIT)
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(s.pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		syscall.Kill(s.pid, syscall.SIGKILL)
		s.pid = 0
	}
	os.RemoveAll(s.dir)
}

// Log returns the server's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

// DSN returns the URL of database db as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

var dbSeq atomic.Int64

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := Exec(context.Background(), s.DSN("postgres"), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return s.DSN(name)
}

// Exec runs sql on a connection of its own to dsn.
func Exec(ctx context.Context, dsn, sql string, args ...any) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgtest: %s: %w", sql, err)
	}
	return nil
}
