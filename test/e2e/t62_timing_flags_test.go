package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT62ImpossibleTimingRefused starts the real binary with timing flags
// under which no unlisted mail could ever pass: it must refuse to start
// with exit status 2 and a message naming both flags, from the command
// line and from a config file alike.
func TestT62ImpossibleTimingRefused(t *testing.T) {
	t.Parallel()
	bin := harness.GreymilterBinary(t)
	conf := filepath.Join(t.TempDir(), "greymilter.conf")
	if err := os.WriteFile(conf, []byte("delay = 1h\npenalty = 5m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args       []string
		flag, than string
	}{
		{[]string{"--delay", "10m", "--retry-window", "5m"}, "--retry-window", "--delay"},
		{[]string{"--delay", "10m", "--retry-window", "10m"}, "--retry-window", "--delay"},
		{[]string{"--delay", "3d"}, "--retry-window", "--delay"}, // the default window is 2d
		{[]string{"--delay", "10m", "--purge-unverified", "5m"}, "--purge-unverified", "--delay"},
		{[]string{"--delay", "10m", "--max-age", "5m"}, "--max-age", "--delay"},
		{[]string{"--delay", "10m", "--penalty", "1m", "--max-wait", "5m"}, "--max-wait", "--delay"},
		{[]string{"--delay", "10m", "--penalty", "1m", "--max-wait", "10m"}, "--max-wait", "--delay"},
		{[]string{"--config", conf, "--max-wait", "30m"}, "--max-wait", "--delay"},
	} {
		args := append([]string{"--allow-root", "--db", ":memory:", "-s", "inet:127.0.0.1:0"}, c.args...)
		var stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &stderr
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%v: greymilter started (still running after 10s), want a refusal", c.args)
			continue
		}
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %q", c.args, code, stderr.String())
			continue
		}
		msg := stderr.String()
		if !strings.Contains(msg, c.flag+" ") || !strings.Contains(msg, c.than+" ") {
			t.Errorf("%v: message %q does not name both %s and %s", c.args, msg, c.flag, c.than)
		}
	}
}

// TestT62PossibleTimingStarts: the same flags in combinations that work
// start normally; --max-wait matters only with a penalty.
func TestT62PossibleTimingStarts(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--delay", "10m", "--max-wait", "5m"},
		{"--delay", "1h", "--retry-window", "61m", "--purge-unverified", "61m", "--max-age", "2h", "--penalty", "1m", "--max-wait", "2h"},
	} {
		gm := harness.Greymilter(t, args...)
		if err := gm.Stop(); err != nil {
			t.Errorf("%v: exit %v", args, err)
		}
	}
}
