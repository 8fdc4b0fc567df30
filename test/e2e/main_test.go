// Package e2e holds greymilter's end-to-end tests: the real greymilter
// binary behind a real Postfix (see package harness), each numbered scenario
// in a file of its own. greymilter runs with a short --delay so that the
// tests wait a few real seconds for it.
package e2e

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

func TestMain(m *testing.M) { harness.Main(pgtest.Wrap(m)) }

const (
	// delay is greymilter's --delay in these tests.
	delay = 3 * time.Second
	// hostname is greymilter's --hostname, named in X-Greylist.
	hostname = "mx.e2e.test"
)

// system starts greymilter (--delay 3s plus args) and a Postfix that uses
// it as its milter.
func system(t *testing.T, args ...string) (*harness.GreymilterProcess, *harness.PostfixInstance) {
	t.Helper()
	harness.Require(t, "postfix") // before building greymilter for nothing
	gm := harness.Greymilter(t, append([]string{"--delay", delay.String(), "--hostname", hostname}, args...)...)
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	return gm, pf
}

var greylistedText = regexp.MustCompile(`^Greylisted, please try again in (\d+) seconds$`)

// greylisted checks that r is greymilter's deferral and returns the wait it
// announces, in seconds.
func greylisted(t *testing.T, what string, r harness.Reply) int {
	t.Helper()
	m := greylistedText.FindStringSubmatch(r.Text)
	if r.Code != 451 || r.Enhanced != "4.7.1" || m == nil {
		t.Fatalf("%s: %v, want 451 4.7.1 Greylisted, please try again in N seconds", what, r)
	}
	wait, _ := strconv.Atoi(m[1])
	if wait < 1 || wait > int(delay/time.Second) {
		t.Fatalf("%s: wait %d seconds, want 1 to %d", what, wait, int(delay/time.Second))
	}
	return wait
}

// accepted checks that r is a positive reply to RCPT.
func accepted(t *testing.T, what string, r harness.Reply) {
	t.Helper()
	if r.Code != 250 {
		t.Fatalf("%s: %v, want 250", what, r)
	}
}

// sleepFor waits out a wait announced in a deferral, plus a margin for the
// rounding of seconds.
func sleepFor(wait int) {
	time.Sleep(time.Duration(wait)*time.Second + 500*time.Millisecond)
}

// decision waits for greymilter's log line about the n-th decision (from 1)
// on recipient and checks its action and reason.
func decision(t *testing.T, gm *harness.GreymilterProcess, recipient string, n int, action, reason string) harness.LogRecord {
	t.Helper()
	got := gm.WaitRecords(harness.DecisionFor(recipient), n)[n-1]
	if got["action"] != action || got["reason"] != reason {
		t.Fatalf("decision %d on %s: action=%s reason=%s, want action=%s reason=%s (%v)",
			n, recipient, got["action"], got["reason"], action, reason, got)
	}
	return got
}
