package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

// customerDomain is a second domain the T85 Postfix delivers, the customer
// of the opt-in rules.
const customerDomain = "customer.example"

// rulesSystem writes rules to a file and starts greymilter with --rules
// (plus args) behind a Postfix that delivers both test domains; front is
// "milter" or "policy".
func rulesSystem(t *testing.T, front, rules string, args ...string) (string, *harness.GreymilterProcess, *harness.PostfixInstance) {
	t.Helper()
	harness.Require(t, "postfix")
	path := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := harness.PostfixOptions{MainCF: []string{"virtual_mailbox_domains = " + harness.Domain + ", " + customerDomain}}
	args = append([]string{"--delay", "1h", "--rules", path}, args...)
	if front == "policy" {
		args = append(args, "--policy-socket", "inet:127.0.0.1:0")
	}
	gm := harness.Greymilter(t, args...)
	if front == "policy" {
		opts.PolicyService = "inet:" + gm.PolicyAddr()
	} else {
		opts.Milter = gm.Socket
	}
	return path, gm, harness.Postfix(t, opts)
}

// The opt-in rules of T85 (sqlgrey's opt-in): only the customer's domain
// is greylisted; one of its addresses never is.
const optInRules = `# T85
recipient sales@customer.example  => mode never
recipient @customer.example       => mode always
=>                                   mode never
`

func send(t *testing.T, pf *harness.PostfixInstance, rcpt string) harness.Reply {
	t.Helper()
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "203.0.113.85", ClientName: "mail.sender.example", Helo: "mail.sender.example",
		From: "a@sender.example", To: []string{rcpt}})
	if len(res.Rcpt) != 1 {
		t.Fatalf("%s: %+v", rcpt, res)
	}
	if res.Rcpt[0].Code == 250 {
		pf.WaitMessage(t, rcpt, res.MessageID)
	}
	return res.Rcpt[0]
}

// TestT85RulesOptIn: through the real Postfix, with the milter and with
// the policy server, a recipient under mode never gets 250 at once, the
// customer's domain is greylisted and every other domain is not. A broken
// rules file on SIGHUP keeps the rules in force; a good one replaces them.
func TestT85RulesOptIn(t *testing.T) {
	t.Parallel()
	for _, front := range []string{"milter", "policy"} {
		t.Run(front, func(t *testing.T) {
			t.Parallel()
			path, gm, pf := rulesSystem(t, front, optInRules)
			wantCode := map[string]int{"milter": 451, "policy": 450}[front]
			cases := []struct {
				rcpt   string
				code   int
				reason string
				line   string
			}{
				{"sales@" + customerDomain, 250, "rule-never", ":2"},
				{"t85-" + front + "@" + customerDomain, wantCode, "new", ":3"},
				{"t85-" + front + "@" + harness.Domain, 250, "rule-never", ":4"},
			}
			for _, c := range cases {
				r := send(t, pf, c.rcpt)
				if r.Code != c.code {
					t.Errorf("%s: %v, want %d", c.rcpt, r, c.code)
				}
				rec := gm.WaitRecord(harness.DecisionFor(c.rcpt))
				if rec["reason"] != c.reason || !strings.HasSuffix(rec["rule"], c.line) {
					t.Errorf("%s: decision %v, want reason=%s rule=...%s", c.rcpt, rec, c.reason, c.line)
				}
			}
			if front == "policy" {
				return
			}
			// A broken file: the old rules stay, the log names FILE:LINE.
			if err := os.WriteFile(path, []byte("=> mode always\n=> mode sometimes\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			gm.Signal(syscall.SIGHUP)
			gm.WaitRecord(func(r harness.LogRecord) bool { return strings.Contains(r["err"], path+":2: ") })
			rcpt := "t85-after-bad@" + harness.Domain
			if r := send(t, pf, rcpt); r.Code != 250 {
				t.Errorf("after a broken reload: %v, want 250 (old rules)", r)
			}
			// A good file: opt-out of nothing, everybody is greylisted.
			if err := os.WriteFile(path, []byte("=> mode always\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			gm.Signal(syscall.SIGHUP)
			gm.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "configuration reloaded" })
			rcpt = "t85-after-good@" + harness.Domain
			if r := send(t, pf, rcpt); r.Code != 451 {
				t.Errorf("after a good reload: %v, want 451", r)
			}
		})
	}
}

// TestT85BadRulesExit2: a broken rules file at start exits 2 naming
// FILE:LINE.
func TestT85BadRulesExit2(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(path, []byte("recipient a@b.example => mode never\nclient 192.0.2.300 => delay 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.GreymilterBinary(t), "--allow-root", "--db", ":memory:", "--socket", "inet:127.0.0.1:0", "--rules", path).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), path+":2: client: ") {
		t.Errorf("exit %v, output %q; want exit 2 naming %s:2", err, out, path)
	}
}

// TestT86ScoredDNSBL: with --dnsbl-action score a listed client that looks
// like a bot (dynamic name, made-up HELO) is refused with the DNSBL's 550,
// a listed client that looks like a mail server is only greylisted. With
// --dry-run both get 250 and the log shows the rejection that was spared.
func TestT86ScoredDNSBL(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix")
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	bot := harness.Envelope{ClientAddr: "203.0.113.1", ClientName: "dsl-203-0-113-1.dyn.isp.e2e.test", Helo: "desktop-7f3k", From: "a@sender.example"}
	server := harness.Envelope{ClientAddr: "203.0.113.2", ClientName: "mail.sender.example", Helo: "mail.sender.example", From: "a@sender.example"}
	for _, dry := range []bool{false, true} {
		args := []string{"--delay", "1h", "--dns", srv.Addr(), "-a", "bl.e2e.test", "--dnsbl-action", "score", "--score-dnsbl", "3", "--reject-threshold", "6", "--spf-identity=false"}
		if dry {
			args = append(args, "--dry-run")
		}
		gm := harness.Greymilter(t, args...)
		pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
		tag := strconv.FormatBool(dry)
		bot.To, server.To = []string{"t86-bot-" + tag + "@" + harness.Domain}, []string{"t86-server-" + tag + "@" + harness.Domain}
		botReply, serverReply := harness.Send(t, pf.Addr, bot).Rcpt[0], harness.Send(t, pf.Addr, server).Rcpt[0]
		botRec, serverRec := gm.WaitRecord(harness.DecisionFor(bot.To[0])), gm.WaitRecord(harness.DecisionFor(server.To[0]))
		if botRec["action"] != "reject" || botRec["reason"] != "dnsbl-score" || botRec["score"] != "7" || botRec["check_dnsbl"] != "+3:bl.e2e.test" {
			t.Errorf("dry-run %v: bot decision %v", dry, botRec)
		}
		if serverRec["action"] != "greylist" || serverRec["score"] != "3" {
			t.Errorf("dry-run %v: server decision %v", dry, serverRec)
		}
		if dry {
			if botReply.Code != 250 || serverReply.Code != 250 || botRec["dry_run"] != "true" {
				t.Errorf("dry run: bot %v, server %v, want 250 and 250; decision %v", botReply, serverReply, botRec)
			}
			continue
		}
		if got := botReply.String(); got != "550 5.7.1 Rejected. Address 203.0.113.1 found in bl.e2e.test" {
			t.Errorf("bot: %q, want the DNSBL's 550", got)
		}
		if serverReply.Code != 451 {
			t.Errorf("server: %v, want 451", serverReply)
		}
	}
}

var waitText = regexp.MustCompile(`try again in (\d+) seconds`)

// TestT87SuspiciousPenalty: in --mode suspicious a greylisted sender that
// retries at once is told to wait the delay again on top (the penalty
// defaults to the delay); in --mode always, or with --penalty 0, not.
func TestT87SuspiciousPenalty(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix")
	srv := dnstest.Start(t, "testdata/suspicion.zone")
	for _, c := range []struct {
		name    string
		args    []string
		penalty bool
	}{
		{"suspicious", []string{"--mode", "suspicious"}, true},
		{"always", nil, false},
		{"suspicious-penalty-0", []string{"--mode", "suspicious", "--penalty", "0"}, false},
	} {
		gm := harness.Greymilter(t, append([]string{"--delay", "60s", "--dns", srv.Addr()}, c.args...)...)
		pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
		env := dynamicSender("t87-" + c.name + "@" + harness.Domain)
		waits := make([]int, 2)
		for i := range waits {
			r := harness.Send(t, pf.Addr, env).Rcpt[0]
			m := waitText.FindStringSubmatch(r.Text)
			if r.Code != 451 || m == nil {
				t.Fatalf("%s: attempt %d: %v", c.name, i+1, r)
			}
			waits[i], _ = strconv.Atoi(m[1])
		}
		// The retry comes within seconds: with the penalty the wait grows
		// to about 120 s, without it shrinks from 60 s.
		if got := waits[1] > 60; got != c.penalty {
			t.Errorf("%s: waits %v; penalty %v, want %v", c.name, waits, got, c.penalty)
		}
		gm.WaitRecords(harness.DecisionFor(env.To[0]), 2)
	}
}

// TestT85RulesPostgreSQL: on a PostgreSQL store a rule's delay is kept
// per mail: a recipient under a 1s rule passes after it, while one under
// the 3s default still waits; a recipient under mode never passes at once.
func TestT85RulesPostgreSQL(t *testing.T) {
	t.Parallel()
	harness.Require(t)
	path := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(path, []byte("recipient @fast.example => delay 1s\nrecipient never-t85@test.example => mode never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := pgGreymilter(t, pgtest.Shared(t).NewDatabase(t), "--rules", path)
	p := dialPolicyT(t, addr)
	fast, slow := "a-t85@fast.example", "b-t85@"+harness.Domain
	if a := mustAsk(t, p, "198.51.100.85", "alice@sender.example", fast); a != "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 1 seconds" {
		t.Fatalf("under the 1s rule: %q", a)
	}
	if a := mustAsk(t, p, "198.51.100.85", "alice@sender.example", slow); !isGreylisted(a) {
		t.Fatalf("under the default: %q", a)
	}
	time.Sleep(1500 * time.Millisecond)
	if a := mustAsk(t, p, "198.51.100.85", "alice@sender.example", fast); !passes(a) {
		t.Errorf("retry after the rule's 1s: %q, want a pass", a)
	}
	if a := mustAsk(t, p, "198.51.100.85", "alice@sender.example", slow); !isGreylisted(a) {
		t.Errorf("retry after 1.5s under the 3s default: %q, want greylisted", a)
	}
	if a := mustAsk(t, p, "198.51.100.85", "alice@sender.example", "never-t85@test.example"); a != "DUNNO" {
		t.Errorf("mode never: %q, want DUNNO", a)
	}
}
