package e2e

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// TestT15ClientResolve: Sendmail gives a milter the client's PTR name even
// when it does not forward-confirm, and says so in {client_resolve}.
// greymilter trusts the name only when that is OK; otherwise it confirms
// the name with its own reverse and forward lookups before the name rules
// of the lists (here google.com of the shipped whitelist) may match.
// Driven by miltertest, which sends the macros as Sendmail would.
func TestT15ClientResolve(t *testing.T) {
	t.Parallel()
	harness.Require(t, "miltertest")
	srv := dnstest.Start(t, "testdata/client_resolve.zone")
	gm := harness.Greymilter(t, "--delay", "1h", "--dns", srv.Addr(), "--dns-timeout", "1s")
	host, port, _ := strings.Cut(gm.Addr, ":")
	script, err := filepath.Abs(filepath.Join("..", "miltertest", "client_resolve.lua"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, addr, client, resolve string
		expect, reason              string
	}{
		// The PTR name does not forward-confirm: no whitelisting by name,
		// whatever the client claims.
		{"forged", "192.0.2.25", "mail-forged.google.com", "FORGED", "reply", "new"},
		{"failed", "192.0.2.25", "mail-forged.google.com", "FAIL", "reply", "new"},
		{"no macro", "192.0.2.25", "mail-forged.google.com", "-", "reply", "new"},
		// Sendmail verified the name.
		{"verified", "192.0.2.25", "mail-forged.google.com", "OK", "continue", "whitelist"},
		// Sendmail could not verify it (temporary failure); greymilter's
		// own lookup confirms it.
		{"confirmed by lookup", "192.0.2.26", "mail-real.google.com", "TEMP", "continue", "whitelist"},
	}
	for i, c := range cases {
		rcpt := "t15-" + strconv.Itoa(i) + "@test.example"
		out, err := exec.Command("miltertest",
			"-D", "socket=inet:"+port+"@"+host,
			"-D", "client_addr="+c.addr, "-D", "client_name="+c.client,
			"-D", "resolve="+c.resolve, "-D", "expect="+c.expect, "-D", "rcpt="+rcpt,
			"-s", script).CombinedOutput()
		if err != nil {
			t.Errorf("%s: miltertest: %v\n%s", c.name, err, out)
			continue
		}
		rec := gm.WaitRecord(harness.DecisionFor(rcpt))
		if rec["reason"] != c.reason {
			t.Errorf("%s: decision %v, want reason=%s", c.name, rec, c.reason)
		}
	}
}
