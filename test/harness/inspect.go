package harness

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Exec runs the greymilter binary once more with the
// same arguments and extra ones after them, and returns its combined
// output and exit status (for what it says at start and how it exits).
// It is killed after 10 seconds.
func (g *GreymilterProcess) Exec(extra ...string) (string, int) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, append(append([]string(nil), g.Args...), extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	g.t.Fatalf("harness: run greymilter: %v", err)
	return "", -1
}

// ServiceURL returns the URL of an HTTP service of the running greymilter
// ("metrics", "pprof"), from the last run's log: start it with
// --metrics-listen (--pprof-listen) 127.0.0.1:0.
func (g *GreymilterProcess) ServiceURL(service string) string {
	g.t.Helper()
	var url string
	for _, line := range strings.Split(g.Log(), "\n") {
		if _, rest, ok := strings.Cut(line, `service="`+service+` `); ok && strings.Contains(line, "msg=listening") {
			url, _, _ = strings.Cut(rest, `"`)
		}
	}
	if url == "" {
		g.t.Fatalf("harness: greymilter logs no %s server\n%s", service, g.Log())
	}
	return url
}

// GoBinary builds the command pkg of this module ("./cmd/greyload") into
// the test's temp dir and returns its path.
func GoBinary(t testing.TB, pkg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if err := goBuild(pkg, path); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return path
}

// Metric returns the value of a metric without labels, and whether it is
// there.
func (g *GreymilterProcess) Metric(name string) (float64, bool) {
	g.t.Helper()
	resp, err := http.Get(g.MetricsURL() + "/metrics")
	if err != nil {
		g.t.Fatalf("harness: metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
