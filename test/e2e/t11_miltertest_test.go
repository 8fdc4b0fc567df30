package e2e

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT11Miltertest runs test/miltertest/greylist.lua with miltertest
// (OpenDKIM's libmilter-based MTA simulator) against greymilter: a deferral
// at RCPT, then after the delay a pass with the X-Greylist header.
func TestT11Miltertest(t *testing.T) {
	t.Parallel()
	harness.Require(t, "miltertest")
	gm := harness.Greymilter(t, "--delay", delay.String(), "--hostname", hostname)
	host, port, _ := strings.Cut(gm.Addr, ":")
	script, err := filepath.Abs(filepath.Join("..", "miltertest", "greylist.lua"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("miltertest",
		"-D", "socket=inet:"+port+"@"+host, // libmilter's socket syntax
		"-D", "delay="+strconv.Itoa(int(delay/time.Second)),
		"-s", script).CombinedOutput()
	if err != nil {
		t.Fatalf("miltertest: %v\n%s", err, out)
	}
	t.Logf("miltertest:\n%s", out)
	decision(t, gm, "rcpt@test.example", 1, "greylist", "new")
	decision(t, gm, "rcpt@test.example", 2, "pass", "passed")
}
