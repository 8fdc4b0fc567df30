// Package packaging tests how greymilter is installed: the systemd unit
// passes systemd-analyze verify, and the Debian package that `make deb`
// builds installs with dpkg on this machine, runs from the installed paths
// as its own user, and is removed cleanly.
package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// repoRoot is the module's root directory (tests run in test/packaging).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestSystemdUnitVerifies runs systemd-analyze verify on
// contrib/greymilter.service, with the binary it starts and the man page
// its Documentation= names in place (the unit is copied with the built
// binary's path; the man page is found through MANPATH).
func TestSystemdUnitVerifies(t *testing.T) {
	harness.Require(t, "systemd-analyze", "man")
	root := repoRoot(t)
	bin := harness.GreymilterBinary(t)
	dir := t.TempDir()
	unit, err := os.ReadFile(filepath.Join(root, "contrib/greymilter.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=greymilter", "StateDirectory=greymilter", "RuntimeDirectory=greymilter",
		"ExecReload=/usr/bin/greymilter check-config", "ExecReload=/bin/kill -HUP $MAINPID",
		"ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes"} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	path := filepath.Join(dir, "greymilter.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/greymilter", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	man8 := filepath.Join(dir, "man", "man8")
	if err := os.MkdirAll(man8, 0o755); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(root, "contrib/greymilter.8"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(man8, "greymilter.8"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-analyze", "verify", path)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(dir, "man"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebInstalls builds the package with make deb, installs it with
// dpkg -i on this machine, and checks what it installed: the system user,
// the state directory, the unit, the man page; check-config and version
// from /usr/bin; the daemon started from the installed configuration as
// the greymilter user. Then it purges the package.
func TestDebInstalls(t *testing.T) {
	harness.Require(t, "dpkg", "make", "runuser", "useradd", "userdel")
	if exec.Command("dpkg-query", "-W", "greymilter").Run() == nil {
		t.Fatal("a greymilter package is installed already; this test installs and purges its own")
	}
	_, err := user.Lookup("greymilter")
	userExisted := err == nil

	dir := t.TempDir()
	mk := exec.Command("make", "deb", "DEB_DIR="+dir)
	mk.Dir = repoRoot(t)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "greymilter_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	run(t, "dpkg", "-i", debs[0])
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "--purge", "greymilter").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
		for _, p := range []string{"/usr/bin/greymilter", "/etc/greymilter/greymilter.conf", "/var/lib/greymilter"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s is still there after dpkg --purge", p)
			}
		}
		if !userExisted {
			exec.Command("userdel", "greymilter").Run() //nolint:errcheck // leave the machine as it was
		}
	})

	if out := run(t, "/usr/bin/greymilter", "version"); !strings.HasPrefix(out, "greymilter ") {
		t.Errorf("greymilter version: %q", out)
	}
	if out := run(t, "runuser", "-u", "greymilter", "--", "/usr/bin/greymilter", "check-config", "--config", "/etc/greymilter/greymilter.conf"); out != "ok\n" {
		t.Errorf("check-config of the installed configuration: %q", out)
	}
	u, err := user.Lookup("greymilter")
	if err != nil {
		t.Fatalf("postinst made no greymilter user: %v", err)
	}
	if out := run(t, "stat", "-c", "%U %a", "/var/lib/greymilter"); out != "greymilter 750\n" {
		t.Errorf("/var/lib/greymilter: %q, want owned by greymilter, mode 750", out)
	}
	for _, p := range []string{"/lib/systemd/system/greymilter.service", "/usr/share/man/man8/greymilter.8.gz"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if out := run(t, "dpkg-query", "-W", "-f", "${Conffiles}", "greymilter"); !strings.Contains(out, "/etc/greymilter/greymilter.conf") {
		t.Errorf("the configuration is not a conffile: %q", out)
	}

	// The daemon as the unit runs it (its socket moved to a free port),
	// writing its database in /var/lib/greymilter as user greymilter.
	logPath := filepath.Join(dir, "greymilter.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	gm := exec.Command("/usr/bin/greymilter", "--config", "/etc/greymilter/greymilter.conf", "--socket", "inet:127.0.0.1:0")
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	gm.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Pdeathsig: syscall.SIGKILL}
	gm.Stdout, gm.Stderr = logFile, logFile
	if err := gm.Start(); err != nil {
		t.Fatal(err)
	}
	listening := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !listening; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(logPath)
		listening = strings.Contains(string(b), "msg=listening")
	}
	gm.Process.Signal(syscall.SIGTERM) //nolint:errcheck
	exited := make(chan error, 1)
	go func() { exited <- gm.Wait() }()
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-time.After(15 * time.Second):
		gm.Process.Kill() //nolint:errcheck
		waitErr = fmt.Errorf("still running 15s after SIGTERM: %v", <-exited)
	}
	log, _ := os.ReadFile(logPath)
	if !listening || waitErr != nil {
		t.Fatalf("the installed daemon: listening %v, exit %v\n%s", listening, waitErr, log)
	}
	st, err := os.Stat("/var/lib/greymilter/greymilter.db")
	if err != nil {
		t.Fatalf("no database in the state directory: %v\n%s", err, log)
	}
	if owner := st.Sys().(*syscall.Stat_t).Uid; int(owner) != uid {
		t.Errorf("the database belongs to uid %d, want greymilter (%d)", owner, uid)
	}
}

// TestMakeInstall stages an installation with make install PREFIX DESTDIR:
// the binary runs, and the unit names the paths under PREFIX.
func TestMakeInstall(t *testing.T) {
	harness.Require(t, "make")
	dest := t.TempDir()
	mk := exec.Command("make", "install", "PREFIX=/opt/gm", "DESTDIR="+dest)
	mk.Dir = repoRoot(t)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, p := range []string{"opt/gm/bin/greymilter", "opt/gm/share/man/man8/greymilter.8", "opt/gm/etc/greymilter/greymilter.conf", "opt/gm/lib/systemd/system/greymilter.service"} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if out := run(t, filepath.Join(dest, "opt/gm/bin/greymilter"), "version"); !strings.HasPrefix(out, "greymilter ") {
		t.Errorf("installed binary: %q", out)
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "opt/gm/lib/systemd/system/greymilter.service"))
	if !strings.Contains(string(unit), "ExecStart=/opt/gm/bin/greymilter --config /opt/gm/etc/greymilter/greymilter.conf\n") {
		t.Errorf("the installed unit does not start /opt/gm/bin/greymilter with /opt/gm/etc/greymilter/greymilter.conf:\n%s", unit)
	}
}
