package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT88VerifiedTLSMilter: with --bypass-verified-tls a client whose
// certificate the MTA verified passes: Sendmail says so in {verify}=OK,
// Postfix by sending {cert_subject} at all. Without the flag a rule can
// match the verified subject; a subject Sendmail did not verify matches
// nothing. Driven by miltertest, which sends the macros as the MTAs do.
func TestT88VerifiedTLSMilter(t *testing.T) {
	t.Parallel()
	harness.Require(t, "miltertest")
	script, err := filepath.Abs(filepath.Join("..", "miltertest", "tls.lua"))
	if err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte("cert-subject mx.partner.example => mode never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bypass := harness.Greymilter(t, "--delay", "1h", "--bypass-verified-tls")
	byRule := harness.Greymilter(t, "--delay", "1h", "--rules", rules)
	cases := []struct {
		name                 string
		gm                   *harness.GreymilterProcess
		mta, verify, subject string
		expect, reason       string
	}{
		{"sendmail verified", bypass, "sendmail", "OK", "mx.partner.example", "continue", "verified-tls"},
		{"sendmail not verified", bypass, "sendmail", "FAIL", "mx.partner.example", "reply", "new"},
		{"sendmail no certificate", bypass, "sendmail", "NO", "-", "reply", "new"},
		{"postfix verified", bypass, "postfix", "-", "mx.partner.example", "continue", "verified-tls"},
		{"postfix no verified certificate", bypass, "postfix", "-", "-", "reply", "new"},
		{"rule on a verified subject", byRule, "sendmail", "OK", "mx.partner.example", "continue", "rule-never"},
		{"rule on an unverified subject", byRule, "sendmail", "FAIL", "mx.partner.example", "reply", "new"},
		{"rule on another subject", byRule, "postfix", "-", "mx.other.example", "reply", "new"},
	}
	for i, c := range cases {
		rcpt := "t88-" + strconv.Itoa(i) + "@test.example"
		host, port, _ := strings.Cut(c.gm.Addr, ":")
		out, err := exec.Command("miltertest",
			"-D", "socket=inet:"+port+"@"+host, "-D", "mta="+c.mta, "-D", "verify="+c.verify,
			"-D", "subject="+c.subject, "-D", "expect="+c.expect, "-D", "rcpt="+rcpt,
			"-s", script).CombinedOutput()
		if err != nil {
			t.Errorf("%s: miltertest: %v\n%s", c.name, err, out)
			continue
		}
		if rec := c.gm.WaitRecord(harness.DecisionFor(rcpt)); rec["reason"] != c.reason {
			t.Errorf("%s: decision %v, want reason=%s", c.name, rec, c.reason)
		}
	}
}

// policyTLSAsk sends one policy request to addr and returns the action line.
func policyTLSAsk(t *testing.T, addr string, attrs ...string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=198.51.100.8\nclient_name=unknown\nhelo_name=desktop-7f3k\nsender=a@client.example\n" +
		strings.Join(attrs, "\n") + "\n\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// TestT88VerifiedTLSPolicy: the policy protocol's ccert_subject (sent by
// Postfix only for a verified certificate) passes with
// --bypass-verified-tls; a bare ccert_fingerprint does not, but a rule can
// pin it.
func TestT88VerifiedTLSPolicy(t *testing.T) {
	t.Parallel()
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte("cert-fingerprint 6B:05:2E:A1:7F:9C => mode never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gm := harness.Greymilter(t, "--delay", "1h", "--policy-socket", "inet:127.0.0.1:0", "--bypass-verified-tls", "--rules", rules)
	cases := []struct {
		name   string
		attrs  []string
		action string
		reason string
	}{
		{"verified", []string{"ccert_subject=mx.partner.example", "ccert_issuer=Test CA", "ccert_fingerprint=01:02"}, "DUNNO", "verified-tls"},
		{"pinned fingerprint", []string{"ccert_subject=", "ccert_fingerprint=6b:05:2e:a1:7f:9c"}, "DUNNO", "rule-never"},
		{"other fingerprint", []string{"ccert_fingerprint=01:02"}, "DEFER_IF_PERMIT", "new"},
		{"no certificate", nil, "DEFER_IF_PERMIT", "new"},
	}
	for i, c := range cases {
		rcpt := "t88p-" + strconv.Itoa(i) + "@test.example"
		got := policyTLSAsk(t, gm.PolicyAddr(), append(c.attrs, "recipient="+rcpt)...)
		if !strings.HasPrefix(got, "action="+c.action) {
			t.Errorf("%s: %q, want action=%s", c.name, got, c.action)
		}
		if rec := gm.WaitRecord(harness.DecisionFor(rcpt)); rec["reason"] != c.reason {
			t.Errorf("%s: decision %v, want reason=%s", c.name, rec, c.reason)
		}
	}
}
