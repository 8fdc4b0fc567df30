package main

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/engine"
)

func TestBadRulesFileExits2WithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "rules")
	if err := os.WriteFile(bad, []byte("# ok\nrecipient a@example.com => mode never\nrecipient b@example.com => mode sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantUsageErrors(t, []string{"--db", ":memory:", "--socket", "inet:127.0.0.1:0", "--dns", "127.0.0.1:53"}, []flagCase{
		{[]string{"--rules", bad}, bad + `:3: mode "sometimes"`},
		{[]string{"--rules", filepath.Join(dir, "missing")}, "missing"},
		{[]string{"--reject-threshold", "-1"}, "--reject-threshold"},
		{[]string{"--dnsbl-action", "maybe"}, "--dnsbl-action"},
		{[]string{"--addbl", "bl.example:score=x"}, "score"},
	})
}

// TestRulesReload: SIGHUP reads the rules file again with the rest of the
// configuration; a broken file is logged with FILE:LINE and the rules in
// force stay.
func TestRulesReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules")
	write := func(text string) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("recipient a@example.com => mode never\n")
	a, logs, err := testApp(t, "--db", ":memory:", "-s", "inet:127.0.0.1:0", "--rules", path, "--trusted-networks", "", "--dns", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	reason := func(rcpt string) string {
		return a.engine.Decide(context.Background(), &engine.Request{ClientAddr: netip.MustParseAddr("192.0.2.1"), Sender: "x@sender.example", Recipient: rcpt}).Reason
	}
	if reason("a@example.com") != "rule-never" || reason("b@example.com") != "new" {
		t.Fatal("the rules read at start are not in force")
	}
	write("recipient b@example.com => mode never\n")
	a.reload()
	if reason("a@example.com") != "new" || reason("b@example.com") != "rule-never" {
		t.Fatal("the reloaded rules are not in force")
	}
	write("recipient a@example.com => mode never\nrecipient b@example.com => mode sometimes\n")
	a.reload()
	if !strings.Contains(logs.String(), path+":2: ") {
		t.Errorf("log %q does not name %s:2", logs.String(), path)
	}
	if reason("c@example.com") != "new" || reason("b@example.com") != "rule-never" {
		t.Fatal("a broken file replaced the rules in force")
	}
}

// TestCheckConfigRules: check-config reads the rules file and names the
// bad line.
func TestCheckConfigRules(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("recipient @customer.example => mode always\n=> mode never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("# rules\nclient 192.0.2.0/24 => delay soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		file, want string
		code       int
	}{
		{good, "ok\n", 0},
		{bad, bad + ":2: delay: bad duration \"soon\"", exitUsage},
	} {
		var stdout bytes.Buffer
		code := run([]string{"check-config", "--db", filepath.Join(dir, "db"), "--dns", "127.0.0.1:53", "--rules", tt.file}, &stdout, io.Discard)
		if code != tt.code || !strings.Contains(stdout.String(), tt.want) {
			t.Errorf("%s: exit %d, output %q; want %d and %q", tt.file, code, stdout.String(), tt.code, tt.want)
		}
	}
}
