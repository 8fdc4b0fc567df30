package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// listsSetup writes list files into a temp dir and starts greymilter with
// them (a 1h delay, so only the lists can let a first attempt through) and
// a Postfix that uses it as its milter.
func listsSetup(t *testing.T, files map[string]string, args ...string) (*harness.GreymilterProcess, *harness.PostfixInstance, string) {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "DIR/", dir+"/")
	}
	gm := harness.Greymilter(t, append([]string{"--delay", "1h"}, args...)...)
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	return gm, pf, dir
}

// TestT20Lists sends through the real Postfix: whitelisted clients (by
// address, network and verified name), recipients and senders get 250 on
// the first attempt; blacklisted clients and senders get 550 5.7.1 with the
// template text, also when a whitelist lists them too; the log names the
// file and line that matched.
func TestT20Lists(t *testing.T) {
	t.Parallel()
	gm, pf, dir := listsSetup(t, map[string]string{
		"wl_clients":    "# friends\n192.0.2.20\n198.51.100.0/24\n2001:db8:20::/48\nfriend.example\n",
		"wl_recipients": "hostmaster@\n",
		"wl_senders":    "news@shop.example\n",
		"bl_clients":    "198.51.100.66\n203.0.113\n",
		"bl_senders":    "spammer@shop.example\n",
	}, "--whitelist-clients", "DIR/wl_clients", "--whitelist-recipients", "DIR/wl_recipients",
		"--whitelist-senders", "DIR/wl_senders", "--custom-bl", "DIR/bl_clients", "--blacklist-senders", "DIR/bl_senders",
		"--blacklist-text", "Go away {CLIENT} <{SENDER}>", "--no-default-whitelist")

	cases := []struct {
		name       string
		env        harness.Envelope
		code       int
		reply      string // for 550: the whole reply
		list, line string // the log's list= value: file in dir and line
	}{
		{"whitelisted client address", harness.Envelope{ClientAddr: "192.0.2.20", From: "a@sender.example"}, 250, "", "wl_clients", "2"},
		{"whitelisted client network", harness.Envelope{ClientAddr: "198.51.100.9", From: "a@sender.example"}, 250, "", "wl_clients", "3"},
		{"whitelisted IPv6 network", harness.Envelope{ClientAddr: "2001:db8:20::25", From: "a@sender.example"}, 250, "", "wl_clients", "4"},
		{"whitelisted client name", harness.Envelope{ClientAddr: "192.0.2.21", ClientName: "mx1.friend.example", From: "a@sender.example"}, 250, "", "wl_clients", "5"},
		{"whitelisted sender", harness.Envelope{ClientAddr: "192.0.2.22", From: "news+7@shop.example"}, 250, "", "wl_senders", "1"},
		{"unlisted client is greylisted", harness.Envelope{ClientAddr: "192.0.2.23", ClientName: "mx.badfriend.example", From: "a@sender.example"}, 451, "", "", ""},
		{"blacklisted client in a whitelisted network", harness.Envelope{ClientAddr: "198.51.100.66", From: "a@sender.example"}, 550,
			"550 5.7.1 Go away 198.51.100.66 <a@sender.example>", "bl_clients", "1"},
		{"blacklisted partial network", harness.Envelope{ClientAddr: "203.0.113.5", From: "a@sender.example"}, 550,
			"550 5.7.1 Go away 203.0.113.5 <a@sender.example>", "bl_clients", "2"},
		{"blacklisted sender from a whitelisted client", harness.Envelope{ClientAddr: "192.0.2.20", From: "spammer@shop.example"}, 550,
			"550 5.7.1 Go away 192.0.2.20 <spammer@shop.example>", "bl_senders", "1"},
	}
	for i, c := range cases {
		rcpt := "t20-" + strconv.Itoa(i) + "@" + harness.Domain
		c.env.To = []string{rcpt}
		res := harness.Send(t, pf.Addr, c.env)
		if len(res.Rcpt) != 1 {
			t.Fatalf("%s: %+v", c.name, res)
		}
		r := res.Rcpt[0]
		if r.Code != c.code || c.reply != "" && r.String() != c.reply {
			t.Errorf("%s: RCPT got %q, want %d %s", c.name, r, c.code, c.reply)
			continue
		}
		if c.code == 250 {
			pf.WaitMessage(t, rcpt, res.MessageID)
		}
		rec := gm.WaitRecord(harness.DecisionFor(rcpt))
		if want := filepath.Join(dir, c.list) + ":" + c.line; c.list != "" && rec["list"] != want {
			t.Errorf("%s: decision %v, want list=%s", c.name, rec, want)
		}
	}

	// A whitelisted recipient passes whatever the client, beside a
	// greylisted one in the same transaction.
	pm := "hostmaster@" + harness.Domain // not postmaster@, which passes anyway (RFC 2142)
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "192.0.2.24", From: "a@sender.example", To: []string{pm, "t20-other@" + harness.Domain}})
	if len(res.Rcpt) != 2 || res.Rcpt[0].Code != 250 || res.Rcpt[1].Code != 451 {
		t.Fatalf("whitelisted recipient beside a greylisted one: %+v", res)
	}
	pf.WaitMessage(t, pm, res.MessageID)
}

// TestT20ListsReload edits a list file and sends SIGHUP: the new entry is
// in force without a restart. A broken file is then logged with FILE:LINE
// and the lists in force stay as they were.
func TestT20ListsReload(t *testing.T) {
	t.Parallel()
	gm, pf, dir := listsSetup(t, map[string]string{"bl": "192.0.2.30\n"}, "--blacklist-clients", "DIR/bl", "--no-default-whitelist")
	bl := filepath.Join(dir, "bl")
	send := func(client, rcpt string) harness.Reply {
		t.Helper()
		res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: client, From: "a@sender.example", To: []string{rcpt + "@" + harness.Domain}})
		if len(res.Rcpt) != 1 {
			t.Fatalf("%+v", res)
		}
		return res.Rcpt[0]
	}
	if r := send("192.0.2.31", "t20r-a"); r.Code != 451 {
		t.Fatalf("before the edit: %v, want a greylisting deferral", r)
	}

	if err := os.WriteFile(bl, []byte("192.0.2.30\n192.0.2.31\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gm.Signal(syscall.SIGHUP)
	gm.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "configuration reloaded" })
	if r := send("192.0.2.31", "t20r-b"); r.Code != 550 || !strings.HasPrefix(r.String(), "550 5.7.1 ") {
		t.Fatalf("after the edit and SIGHUP: %v, want 550 5.7.1", r)
	}

	if err := os.WriteFile(bl, []byte("192.0.2.30\n\n192.0.2.310\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gm.Signal(syscall.SIGHUP)
	rec := gm.WaitRecord(func(r harness.LogRecord) bool { return strings.HasPrefix(r["msg"], "reload failed") })
	if !strings.Contains(rec["err"], bl+":3: ") {
		t.Errorf("reload error %q, want it to name %s:3", rec["err"], bl)
	}
	if r := send("192.0.2.31", "t20r-c"); r.Code != 550 {
		t.Fatalf("after a broken edit: %v, want the previous lists (550)", r)
	}
}

// TestT20ListsBadFileAtStart: a broken list file stops greymilter at start
// with exit status 2 and FILE:LINE on stderr.
func TestT20ListsBadFileAtStart(t *testing.T) {
	t.Parallel()
	bin := harness.GreymilterBinary(t)
	bad := filepath.Join(t.TempDir(), "whitelist_clients")
	if err := os.WriteFile(bad, []byte("example.com\nexa mple.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--allow-root", "--db", ":memory:", "-s", "inet:127.0.0.1:"+strconv.Itoa(harness.FreePort(t)), "--whitelist-clients", bad)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("exit %d (%v), want 2; stderr %q", code, err, stderr.String())
	}
	if !strings.Contains(stderr.String(), bad+":2: ") {
		t.Errorf("stderr %q, want it to name %s:2", stderr.String(), bad)
	}
}

// TestT20DefaultWhitelist: the shipped client whitelist lets a big
// provider's verified name through on the first attempt, and
// --no-default-whitelist turns it off.
func TestT20DefaultWhitelist(t *testing.T) {
	t.Parallel()
	env := harness.Envelope{ClientAddr: "192.0.2.50", ClientName: "mail-wr1-f50.google.com", From: "someone@gmail.example"}
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 250},
		{[]string{"--no-default-whitelist"}, 451},
	} {
		gm, pf, _ := listsSetup(t, nil, c.args...)
		rcpt := "t20d@" + harness.Domain
		env.To = []string{rcpt}
		res := harness.Send(t, pf.Addr, env)
		if len(res.Rcpt) != 1 || res.Rcpt[0].Code != c.code {
			t.Fatalf("%v: %+v, want RCPT %d", c.args, res, c.code)
		}
		rec := gm.WaitRecord(harness.DecisionFor(rcpt))
		if c.code == 250 && !strings.HasPrefix(rec["list"], "default:whitelist_clients:") {
			t.Errorf("decision %v, want list=default:whitelist_clients:LINE", rec)
		}
	}
}
