package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
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

// Domain is the mail domain a [PostfixInstance] delivers locally.
const Domain = "test.example"

// PostfixOptions configures a [PostfixInstance].
type PostfixOptions struct {
	// Milter is the smtpd_milters value, e.g. "inet:127.0.0.1:PORT"
	// (see [GreymilterProcess.Socket]). Empty: no milter.
	Milter string
	// PolicyService is the argument of a check_policy_service restriction
	// put in smtpd_recipient_restrictions, e.g. "inet:127.0.0.1:PORT".
	// Empty: no policy service.
	PolicyService string
	// ChrootSMTPD runs smtpd chrooted in the queue directory, as Debian's
	// default master.cf does: a unix milter socket must then lie under
	// QueueDir, and smtpd_milters names it relative to it
	// ("unix:/greymilter/greymilter.sock").
	ChrootSMTPD bool
	// MainCF holds extra main.cf lines, appended last so that they override
	// the harness's own settings.
	MainCF []string
	// MasterCF holds extra master.cf lines, e.g. the tlsmgr service that
	// smtpd's STARTTLS needs.
	MasterCF []string
}

// PostfixInstance is a running Postfix started by [Postfix].
type PostfixInstance struct {
	Addr      string // smtpd address, "127.0.0.1:PORT"
	ConfigDir string // config_directory, holding main.cf and master.cf
	QueueDir  string // queue_directory
	Maildir   string // where virtual(8) delivers the mail of every recipient
	LogFile   string // maillog_file

	master     *exec.Cmd      // the shell that runs master (masterWrapper)
	masterStop io.WriteCloser // the shell's stdin: closing it stops master
	masterDone chan error
}

// TempDir returns a new directory for the test, removed when it ends, that
// Postfix's daemons (users "postfix" and "nobody") can reach, unlike
// t.TempDir(): the place for a unix socket that Postfix connects to. Its
// path, unlike t.TempDir()'s that comes from the test's name, holds no comma
// or space that would split a list value in main.cf.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "greymilter-harness-")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return dir
}

// Postfix starts a private Postfix instance for the test and stops it, with
// every process it started, when the test ends. See the package comment for
// what the instance is set up to do. When the test fails its mail log is
// written to the test log.
func Postfix(t testing.TB, opts PostfixOptions) *PostfixInstance {
	t.Helper()
	Require(t, "postfix")
	postfixCmd, _ := lookPath("postfix")

	root := TempDir(t)
	p := &PostfixInstance{
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		ConfigDir: filepath.Join(root, "etc"),
		QueueDir:  filepath.Join(root, "queue"),
		Maildir:   filepath.Join(root, "mail", "Maildir"),
		LogFile:   filepath.Join(root, "maillog"),
	}
	dataDir := filepath.Join(root, "data")
	owner, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("harness: postfix: mail_owner: %v", err)
	}
	mailbox, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("harness: postfix: mailbox owner: %v", err)
	}
	for _, d := range []struct {
		path string
		u    *user.User
	}{{p.ConfigDir, nil}, {p.QueueDir, nil}, {dataDir, owner}, {filepath.Dir(p.Maildir), mailbox}} {
		if err := os.Mkdir(d.path, 0o755); err != nil {
			t.Fatalf("harness: postfix: %v", err)
		}
		if d.u != nil {
			uid, _ := strconv.Atoi(d.u.Uid)
			gid, _ := strconv.Atoi(d.u.Gid)
			if err := os.Chown(d.path, uid, gid); err != nil {
				t.Fatalf("harness: postfix: %v", err)
			}
		}
	}

	chroot := "n"
	if opts.ChrootSMTPD {
		chroot = "y"
	}
	files := map[string]string{
		"main.cf":   p.mainCF(dataDir, mailbox, opts),
		"master.cf": fmt.Sprintf(masterCF, p.Addr, chroot) + strings.Join(append(opts.MasterCF, ""), "\n"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(p.ConfigDir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("harness: postfix: %v", err)
		}
	}

	// "postfix start" would leave master running as a daemon if the test
	// binary died (panic, -timeout). Instead the harness runs the checks of
	// "postfix start", which also create the queue directories, with
	// "postfix check", then master in the foreground under a small shell
	// that stops it when the harness closes its stdin or dies. (Pdeathsig
	// on master itself does not survive master's switches of effective
	// user.)
	if out, err := p.postfix(postfixCmd, "check"); err != nil {
		t.Fatalf("harness: postfix -c %s check: %v\n%s\nmail log:\n%s", p.ConfigDir, err, out, p.Log())
	}
	p.master = exec.Command("/bin/sh", "-c", masterWrapper, "sh", filepath.Join(p.postconf(t, "daemon_directory"), "master"))
	p.master.Env = append(os.Environ(), "MAIL_CONFIG="+p.ConfigDir)
	stdin, err := p.master.StdinPipe()
	if err != nil {
		t.Fatalf("harness: postfix master: %v", err)
	}
	p.masterStop = stdin
	if err := p.master.Start(); err != nil {
		t.Fatalf("harness: postfix master: %v", err)
	}
	p.masterDone = make(chan error, 1)
	go func() { p.masterDone <- p.master.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix mail log %s:\n%s", p.LogFile, p.Log())
		}
		p.stop(t)
	})
	if err := waitListening(p.Addr, 10*time.Second); err != nil {
		t.Fatalf("harness: postfix smtpd: %v\nmail log:\n%s", err, p.Log())
	}
	// Whatever answers must be this instance's smtpd, not a process that
	// took the port first.
	if banner, err := greeting(p.Addr, 10*time.Second); err != nil || !strings.HasPrefix(banner, "220 mx."+Domain+" ") {
		t.Fatalf("harness: %s answers %q (%v), not the test instance's smtpd\nmail log:\n%s", p.Addr, banner, err, p.Log())
	}
	return p
}

// greeting reads the first line a server at addr sends.
func greeting(addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (p *PostfixInstance) mainCF(dataDir string, mailbox *user.User, opts PostfixOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, mainCF, p.QueueDir, dataDir, filepath.Dir(p.LogFile), p.LogFile,
		Domain, filepath.Dir(p.Maildir), mailbox.Uid, mailbox.Gid)
	if opts.Milter != "" {
		fmt.Fprintf(&b, "smtpd_milters = %s\n", opts.Milter)
	}
	if opts.PolicyService != "" {
		fmt.Fprintf(&b, "smtpd_recipient_restrictions = check_policy_service %s\n", opts.PolicyService)
	}
	for _, l := range opts.MainCF {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// The harness's main.cf. Every path is the instance's own; the only files
// read from the system are the Postfix programs and /etc/postfix's
// dynamicmaps.cf (meta_directory).
const mainCF = `compatibility_level = 3.6
queue_directory = %s
data_directory = %s
maillog_file_prefixes = %s
maillog_file = %s
myhostname = mx.%[5]s
mydomain = %[5]s
myorigin = %[5]s
mydestination =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4, ipv6
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.1
smtpd_sasl_auth_enable = yes
smtpd_error_sleep_time = 0
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
virtual_mailbox_domains = %[5]s
virtual_mailbox_base = %[6]s
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:%[7]s
virtual_gid_maps = static:%[8]s
default_transport = error:no mail leaves a test instance
relay_transport = error:no mail leaves a test instance
smtp_dns_support_level = disabled
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 10s
milter_content_timeout = 10s
`

// The harness's master.cf: smtpd on the instance's port, the daemons a local
// delivery needs, nothing chrooted but smtpd when asked. %s is the smtpd
// address, then y or n for smtpd's chroot.
const masterCF = `%s inet n - %s - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// Log returns the instance's mail log so far.
func (p *PostfixInstance) Log() string {
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return fmt.Sprintf("(no mail log: %v)", err)
	}
	return string(b)
}

func (p *PostfixInstance) postfix(postfixCmd string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, postfixCmd, append([]string{"-c", p.ConfigDir}, args...)...)
	return cmd.CombinedOutput()
}

// masterWrapper runs Postfix's master ($1) until its stdin reaches EOF, then
// stops it with SIGTERM, as "postfix stop" does, and kills whatever is left
// of master's process group (master makes itself a session leader, and its
// children stay in its group).
const masterWrapper = `"$1" -s </dev/null &
master=$!
while read -r _; do :; done
kill -TERM "$master"
wait "$master"
kill -KILL -"$master" 2>/dev/null
exit 0
`

// stop stops the instance and waits for master to be gone.
func (p *PostfixInstance) stop(t testing.TB) {
	p.masterStop.Close()
	select {
	case <-p.masterDone:
		return
	case <-time.After(15 * time.Second):
	}
	t.Errorf("harness: postfix master did not stop within 15s")
	if b, err := os.ReadFile(filepath.Join(p.QueueDir, "pid", "master.pid")); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	_ = p.master.Process.Kill()
}

// postconf returns the value of a parameter of the instance.
func (p *PostfixInstance) postconf(t testing.TB, name string) string {
	t.Helper()
	postconfCmd, err := lookPath("postconf")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	out, err := exec.Command(postconfCmd, "-c", p.ConfigDir, "-h", name).Output()
	if err != nil {
		t.Fatalf("harness: postconf -c %s -h %s: %v", p.ConfigDir, name, err)
	}
	return strings.TrimSpace(string(out))
}

// waitListening waits until something accepts TCP connections on addr.
func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
