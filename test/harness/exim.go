package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EximOptions configures an [EximInstance].
type EximOptions struct {
	// RcptACL holds ACL statements put in acl_smtp_rcpt after the relay
	// check (recipients outside [Domain] are denied first) and before the
	// final accept: e.g. the greymilter ACL of docs/policyd.md.
	RcptACL string
}

// EximInstance is a private Exim configuration started by [Exim]. It runs
// no daemon: each [EximInstance.Send] is one SMTP session of "exim -bh",
// Exim's host-checking mode, which runs the ACLs of a whole session as if
// from any client address (as XCLIENT does for Postfix) and delivers
// nothing.
type EximInstance struct {
	Binary     string // the exim4 binary
	ConfigFile string // the private configuration (-C)
	Dir        string // holds the configuration, spool and log directories
}

// Exim writes a private Exim configuration for the test in a temporary
// directory: primary_hostname mx.exim.test, local domain [Domain], no DNS
// (host_lookup unset), the spool and the logs inside the directory.
//
// The tests run as root, and root may give any -C file: Debian builds Exim
// with TRUSTED_CONFIG_LIST /etc/exim4/trusted_configs (which the harness
// leaves alone) and no ALT_CONFIG_PREFIX, and only restricts other callers:
// exim4 is setuid root, and for a caller other than root a -C file not in
// that list makes Exim give up root ("exim user lost privilege for using
// -C option"). Called by root, Exim sets itself up as root, then runs the
// SMTP session, -bh ones too, as its exim_user (built in: Debian-exim), who
// therefore owns the spool and log directories: after DATA, -bh writes the
// message to the spool and discards it. Exim wants the file owned by root
// (its configure owner) and not writable by others, as written here.
func Exim(t testing.TB, opts EximOptions) *EximInstance {
	t.Helper()
	Require(t, "exim4")
	bin, _ := lookPath("exim4")
	dir := TempDir(t)
	e := &EximInstance{Binary: bin, ConfigFile: filepath.Join(dir, "exim.conf"), Dir: dir}
	// Exim writes the spool (a message after DATA, discarded at once by
	// -bh) and its logs as its exim_user, Debian-exim.
	owner, err := user.Lookup("Debian-exim")
	if err != nil {
		t.Fatalf("harness: exim: exim_user: %v", err)
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)
	for _, d := range []string{"spool", "log"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o750); err != nil {
			t.Fatalf("harness: exim: %v", err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatalf("harness: exim: %v", err)
		}
	}
	conf := fmt.Sprintf(eximConf, filepath.Join(dir, "spool"), filepath.Join(dir, "log"), Domain, opts.RcptACL)
	if err := os.WriteFile(e.ConfigFile, []byte(conf), 0o644); err != nil {
		t.Fatalf("harness: exim: %v", err)
	}
	// Exim checks the whole configuration when asked for one option.
	if out, err := exec.Command(bin, "-C", e.ConfigFile, "-bP", "primary_hostname").CombinedOutput(); err != nil {
		t.Fatalf("harness: exim -C %s -bP: %v\n%s\nconfiguration:\n%s", e.ConfigFile, err, out, conf)
	}
	return e
}

const eximConf = `# Written by the greymilter test harness, for exim -bh sessions.
primary_hostname = mx.exim.test
qualify_domain = test.example
spool_directory = %s
log_file_path = %s/%%slog
domainlist local_domains = %s
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  deny
    message = relay not permitted
    domains = !+local_domains

%s

  accept
`

// Send runs one SMTP session with Exim as if from env.ClientAddr (exim -bh
// ADDR): the same transaction as [Send], spoken by the harness's SMTP
// client over a socket pair that is Exim's standard input and output. It
// returns the replies and what Exim wrote on standard error: the
// ACL trace and the lines it would log ("LOG: ..."). env.ClientName is the
// client's verified name ("" for none: Exim then has no name and does not
// look one up); env.Login cannot be given to -bh and must be empty.
func (e *EximInstance) Send(t testing.TB, env Envelope) (*Result, string) {
	t.Helper()
	if env.ClientAddr == "" || env.Login != "" {
		t.Fatalf("harness: exim: an envelope for -bh has a client address and no login: %+v", env)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("harness: exim: socketpair: %v", err)
	}
	eximEnd, ourEnd := os.NewFile(uintptr(fds[0]), "exim-stdio"), os.NewFile(uintptr(fds[1]), "smtp-client")
	conn, err := net.FileConn(ourEnd)
	ourEnd.Close()
	if err != nil {
		eximEnd.Close()
		t.Fatalf("harness: exim: %v", err)
	}
	defer conn.Close()
	var stderr bytes.Buffer
	// -oMs gives the client's name, so that Exim looks up none: "" is
	// no name, and no query leaves for the system's resolver.
	cmd := exec.Command(e.Binary, "-C", e.ConfigFile, "-bh", env.ClientAddr, "-oMs", env.ClientName)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = eximEnd, eximEnd, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	eximEnd.Close()
	if err != nil {
		t.Fatalf("harness: exim: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	res := &Result{}
	msg := env.Message
	if msg == nil {
		res.MessageID, msg = newMessage(env)
	}
	env.ClientAddr = "" // given with -bh: no XCLIENT
	c, greeting, err := newClient(&bhConn{Conn: conn, r: bufio.NewReader(conn)})
	res.Greeting = greeting
	if err == nil {
		if err = res.transaction(c, env, msg); err == nil {
			err = c.Quit()
		}
	}
	if res.Rcpt == nil {
		for range env.To {
			res.Rcpt = append(res.Rcpt, res.Refusal())
		}
	}
	conn.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("harness: exim -bh did not end 30s after the session\n%s", stderr.String())
	}
	if err != nil {
		t.Fatalf("harness: exim -bh session: %v\n%s", err, stderr.String())
	}
	return res, stderr.String()
}

// bhConn is the SMTP client's side of an exim -bh session. Exim writes
// notes for the person at the terminal among the SMTP replies: a banner of
// "****" lines and an empty line before the greeting, "**** SMTP testing:
// that is not a real message id!" after DATA. Read drops those lines, no
// SMTP reply ever starting with '*' or being empty.
type bhConn struct {
	net.Conn
	r    *bufio.Reader
	line []byte // what is left of the line being read
}

func (c *bhConn) Read(p []byte) (int, error) {
	for len(c.line) == 0 {
		line, err := c.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if len(line) == 0 {
				return 0, err
			}
		}
		if bytes.HasPrefix(line, []byte("****")) || string(line) == "\n" {
			continue
		}
		c.line = line
	}
	n := copy(p, c.line)
	c.line = c.line[n:]
	return n, nil
}

// EximLog returns the lines Exim would have logged, from the standard
// error of a -bh session ("LOG: " removed).
func EximLog(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(l, "LOG: "); ok {
			out = append(out, rest)
		}
	}
	return out
}
