package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT63HangupDuringStart sends SIGHUP, as logrotate does, to greymilter
// while it starts: in each of a bounded loop of starts the signal comes at
// another moment, from while the list files are read until the sockets
// are up. greymilter must survive every one, become ready, and honour the
// signal once it serves (a reload).
func TestT63HangupDuringStart(t *testing.T) {
	t.Parallel()
	bin := harness.GreymilterBinary(t)
	dir := t.TempDir()
	// A long client list keeps greymilter reading it for a moment that
	// the test can see (the file is open) and hit.
	list := filepath.Join(dir, "whitelist_clients")
	var b strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&b, "10.%d.%d.%d\n", i>>16&255, i>>8&255, i&255)
	}
	if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	const starts = 6
	for i := range starts {
		after := time.Duration(i) * 40 * time.Millisecond
		logFile := filepath.Join(dir, fmt.Sprintf("greymilter-%d.log", i))
		logf, err := os.Create(logFile)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--allow-root", "--db", filepath.Join(dir, "greymilter.db"), "-s", "inet:127.0.0.1:0",
			"--dns", harness.DeadDNS(t), "--whitelist-clients", list)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logf.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		readLog := func() string { s, _ := os.ReadFile(logFile); return string(s) }
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}

		if !waitFor(done, 20*time.Second, func() bool { return holdsFile(cmd.Process.Pid, list) }) {
			stop()
			t.Fatalf("start %d: greymilter never opened %s (or exited: %v)\n%s", i, list, cmd.ProcessState, readLog())
		}
		time.Sleep(after)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatalf("start %d: SIGHUP: %v", i, err)
		}
		ready := waitFor(done, 30*time.Second, func() bool { return strings.Contains(readLog(), "msg=listening") })
		select {
		case <-done:
			t.Fatalf("start %d: SIGHUP %v after the list was opened killed greymilter: %v\n%s", i, after, cmd.ProcessState, readLog())
		default:
		}
		if !ready {
			stop()
			t.Fatalf("start %d: greymilter not ready 30s after SIGHUP\n%s", i, readLog())
		}
		reloaded := waitFor(done, 10*time.Second, func() bool { return strings.Contains(readLog(), `msg="reloading the configuration (SIGHUP)"`) })
		stop()
		if !reloaded {
			t.Errorf("start %d: the SIGHUP during start was not honoured once ready (no reload)\n%s", i, readLog())
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("start %d: exit %d after SIGTERM, want 0\n%s", i, code, readLog())
		}
	}
}

// waitFor polls cond every millisecond until it holds (true), the process
// whose end done signals exits, or timeout passes (false).
func waitFor(done <-chan struct{}, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-done:
			return false
		default:
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// holdsFile reports whether process pid has path open.
func holdsFile(pid int, path string) bool {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fds)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}
