package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// flagCase is a command line that must be refused, and what the message
// must name.
type flagCase struct {
	args []string
	want string
}

// wantUsageErrors runs each case (after base) and wants exit status 2 and
// a message naming what is wrong.
func wantUsageErrors(t *testing.T, base []string, cases []flagCase) {
	t.Helper()
	for _, tt := range cases {
		var stderr bytes.Buffer
		args := append(append([]string{}, base...), tt.args...)
		if code := run(args, io.Discard, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tt.args, code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: message %q does not name %s", tt.args, stderr.String(), tt.want)
		}
	}
}

func TestBadFlagsExit2NamingTheFlag(t *testing.T) {
	tests := []flagCase{
		{[]string{"--delay", "soon"}, "--delay"},
		{[]string{"--max-age", "35"}, "--max-age"}, // postgrey meant days
		{[]string{"--retry-window", "2"}, "--retry-window"},
		{[]string{"--on-error", "explode"}, "--on-error"},
		{[]string{"--socket", "carrier-pigeon:127.0.0.1:1"}, "--socket"},
		{[]string{"--ipv4-prefix", "40"}, "--ipv4-prefix"},
		{[]string{"--trusted-networks", "10.0.0.0/33"}, "--trusted-networks"},
		{[]string{"--socket-mode", "999"}, "--socket-mode"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--socket", "none"}, "--policy-socket"},
		{[]string{"stray-argument"}, "stray-argument"},
	}
	wantUsageErrors(t, []string{"--db", ":memory:"}, tests)
}

func TestHelpListsCommandsAndEveryFlagOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"serve", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
		for _, want := range []string{
			"greymilter [serve] [flags]", "(is the daemon)", "greymilter stats", "greymilter check-config", "greymilter version", "not the daemon",
			"-n, --name", "-s, --socket", "-v, --verbose", "--db", "--delay", "(default 5m0s)", DefaultSocket, "--retry-window", "--penalty", "--max-age",
			"(default 35d)", "--purge-unverified", "--trusted-networks", "--lookup-by-host", "--on-error", "--check-config",
		} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%v lacks %q", args, want)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "greymilter ") || stderr.Len() != 0 {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"300", 300 * time.Second, true},
		{"5m", 5 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"35d", 35 * 24 * time.Hour, true},
		{"0.5d", 12 * time.Hour, true},
		{"-5", 0, false},
		{"-1m", 0, false},
		{"soon", 0, false},
		{"d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func newTestFlags() (*pflag.FlagSet, *coreFlags) {
	c := newConfig()
	return c.fs, &c.core
}

func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "greymilter.conf")
	conf := `# greymilter configuration
delay = 90
retry-window = 1d
trusted-networks = 10.0.0.0/8
trusted-networks = 192.168.0.0/16
greylist-text = "Come back in {SECONDS}s"
lookup-by-host
db = /from/config.db
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, c := newTestFlags()
	if err := fs.Parse([]string{"--db", "/from/command-line.db"}); err != nil {
		t.Fatal(err)
	}
	if errs := applyConfigFile(fs, path, map[string]string{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	if c.rules.Delay != 90*time.Second || c.rules.RetryWindow != 24*time.Hour || !c.byHost {
		t.Errorf("delay %v, retry window %v, by host %v", c.rules.Delay, c.rules.RetryWindow, c.byHost)
	}
	if strings.Join(c.trusted, ",") != "10.0.0.0/8,192.168.0.0/16" {
		t.Errorf("trusted networks %v, want both config lines (and not the default)", c.trusted)
	}
	if c.greylistText != "Come back in {SECONDS}s" {
		t.Errorf("greylist text %q", c.greylistText)
	}
	if c.db != "/from/command-line.db" {
		t.Errorf("db %q: the command line must win", c.db)
	}
}

func TestConfigFileErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		conf, want string
	}{
		{"delay = 5m\nfrobnicate = yes\n", ":2: unknown option \"frobnicate\""},
		{"\n\ndelay = whenever\n", ":3: delay: invalid argument \"whenever\""},
		{"db\n", ":1: option \"db\" needs a value"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "bad.conf")
		os.WriteFile(path, []byte(tt.conf), 0o600)
		fs, _ := newTestFlags()
		fs.Parse(nil)
		errs := applyConfigFile(fs, path, map[string]string{})
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), path+tt.want) {
			t.Errorf("config %q: errors %v, want one starting with %q", tt.conf, errs, path+tt.want)
		}
	}
	// Through run: exit status 2.
	path := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(path, []byte("nonsense = 1\n"), 0o600)
	var stderr bytes.Buffer
	if code := run([]string{"--config", path, "--db", ":memory:"}, io.Discard, &stderr); code != exitUsage {
		t.Errorf("bad config: exit %d, want %d", code, exitUsage)
	}
}

func TestPolicyServerOnly(t *testing.T) {
	a, _, err := testApp(t, "--db", ":memory:", "--socket", "none", "--policy-socket", "inet:127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.services) != 1 || !strings.HasPrefix(a.services[0].name, "policy ") {
		var names []string
		for _, s := range a.services {
			names = append(names, s.name)
		}
		t.Errorf("services %q, want the policy server alone", names)
	}
}

// TestCommandHelpOnStdout: every command's --help goes to standard output
// with exit 0; a bad flag goes to standard error with exit 2.
func TestCommandHelpOnStdout(t *testing.T) {
	for _, c := range commands() {
		if c.name == "version" {
			continue
		}
		var stdout, stderr bytes.Buffer
		if code := run([]string{c.name, "--help"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "Usage") {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", c.name, code, stdout.String(), stderr.String())
		}
		stdout.Reset()
		stderr.Reset()
		if code := run([]string{c.name, "--no-such-flag"}, &stdout, &stderr); code != exitUsage || stdout.Len() != 0 || !strings.Contains(stderr.String(), "no-such-flag") {
			t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q", c.name, code, stdout.String(), stderr.String())
		}
	}
}
