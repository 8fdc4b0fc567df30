package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
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
		if code := run(args, &stderr); code != exitUsage {
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

func TestHelpListsEveryFlagWithDefaults(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, &stderr); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"-n, --name", "-s, --socket", "-v, --verbose", "--db", "--delay", "(default 5m0s)", DefaultSocket, "--retry-window", "--penalty", "--max-age", "(default 35d)", "--purge-unverified", "--trusted-networks", "--lookup-by-host", "--on-error"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"--version"}, &stderr); code != 0 || !strings.HasPrefix(stderr.String(), "greymilter ") {
		t.Fatalf("--version: exit %d, %q", code, stderr.String())
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
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var c coreFlags
	c.add(fs)
	return fs, &c
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
	if err := applyConfigFile(fs, path); err != nil {
		t.Fatal(err)
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
		err := applyConfigFile(fs, path)
		if err == nil || !strings.Contains(err.Error(), path+tt.want) {
			t.Errorf("config %q: error %v, want it to contain %q", tt.conf, err, path+tt.want)
		}
	}
	// Through run: exit status 2.
	path := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(path, []byte("nonsense = 1\n"), 0o600)
	var stderr bytes.Buffer
	if code := run([]string{"--config", path, "--db", ":memory:"}, &stderr); code != exitUsage {
		t.Errorf("bad config: exit %d, want %d", code, exitUsage)
	}
}

// buildAll parses args with every module's flags and builds the app; the
// modules' flag variables are set back to their defaults afterwards.
func buildAll(t *testing.T, args ...string) (*app, error) {
	t.Helper()
	fs, core := newTestFlags()
	for _, m := range modules {
		m.addFlags(fs)
	}
	t.Cleanup(func() {
		fs, _ := newTestFlags()
		for _, m := range modules {
			m.addFlags(fs) // registering a flag stores its default
		}
	})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	a, err := build(context.Background(), core, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if a != nil {
		t.Cleanup(func() { a.close() })
	}
	return a, err
}

func TestPolicyServerOnly(t *testing.T) {
	a, err := buildAll(t, "--db", ":memory:", "--socket", "none", "--policy-socket", "inet:127.0.0.1:0")
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
