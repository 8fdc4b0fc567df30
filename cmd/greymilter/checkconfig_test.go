package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig runs check-config on a table of good and bad
// configurations: ok and exit 0, or every problem, FILE:LINE first where a
// file is to blame, and exit 2. It never binds the socket nor creates the
// database.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodList := file("good_clients", "192.0.2.0/24\nmail.example.org\n")
	badList := file("bad_clients", "# comment\n192.0.2.0/24\n192.0.2.999\n")
	badPatterns := file("bad_patterns", "dynamic dsl\nsometimes dsl\n")
	goodConf := file("good.conf", "# production\ndelay = 2m\nretry-window = 1d\nwhitelist-clients = "+goodList+"\nmode = suspicious\naddbl = bl.example=127.0.0.2\n")
	badConf := file("bad.conf", "delay = 2m\nfrobnicate = yes\nretry-window = soon\nipv4-prefix = 40\n\nwhitelist-clients = "+badList+"\n")
	badCombo := file("combo.conf", "dnsbl-reply = bl.example=550 5.7.1 go away\n")
	sock := filepath.Join(dir, "milter.sock")
	db := filepath.Join(dir, "greymilter.db")
	base := []string{"--socket", "unix:" + sock, "--db", db, "--dns", "127.0.0.1:53"}

	tests := []struct {
		name string
		args []string
		want []string // lines of the output, in order
	}{
		{"defaults", nil, []string{"ok"}},
		{"good config file", []string{"--config", goodConf}, []string{"ok"}},
		{"good flags", []string{"--delay", "90", "--addwl", "wl.example", "--whitelist-clients", goodList}, []string{"ok"}},
		{"every problem of a config file", []string{"--config", badConf}, []string{
			badConf + ":2: unknown option \"frobnicate\"",
			badConf + ":3: retry-window: ",
			badConf + ":4: --ipv4-prefix 40: want 0 to 32",
			badList + ":3: ",
		}},
		{"the command line names no file", []string{"--ipv6-prefix", "200"}, []string{"--ipv6-prefix 200: want 0 to 128"}},
		{"a list file", []string{"--blacklist-clients", badList}, []string{badList + ":3: "}},
		{"dynamic patterns", []string{"--dynamic-patterns", badPatterns}, []string{badPatterns + ":2: "}},
		{"a DNS list spec", []string{"--addbl", "bl.example=127.0.0.300"}, []string{"--addbl: "}},
		{"a combination", []string{"--config", badCombo}, []string{badCombo + ":1: --dnsbl-reply without --addbl"}},
		{"two flags", []string{"--dns-min-ttl", "2h", "--dns-max-ttl", "1h", "--dnsbl-code", "250"}, []string{"--dns-min-ttl", "--dnsbl-code 250", "--dnsbl-ecode"}},
		{"a missing config file", []string{"--config", filepath.Join(dir, "missing.conf")}, []string{"--config: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, args := range [][]string{
				append(append([]string{"check-config"}, base...), tt.args...),
				append(append([]string{"--check-config"}, base...), tt.args...),
			} {
				var stdout, stderr bytes.Buffer
				code := run(args, &stdout, &stderr)
				wantCode := exitUsage
				if tt.want[0] == "ok" {
					wantCode = 0
				}
				if code != wantCode {
					t.Errorf("%v: exit %d, want %d; stdout %q stderr %q", args, code, wantCode, stdout.String(), stderr.String())
				}
				lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
				if len(lines) != len(tt.want) {
					t.Errorf("%v: output\n%s\nwant %d lines starting %q", args, stdout.String(), len(tt.want), tt.want)
					continue
				}
				for i, want := range tt.want {
					if !strings.HasPrefix(lines[i], want) {
						t.Errorf("%v: line %d %q, want it to start with %q", args, i+1, lines[i], want)
					}
				}
			}
			for _, p := range []string{sock, db} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("check-config created %s", p)
				}
			}
		})
	}
}

// TestCheckConfigBadCommandLine: a flag that does not parse is a usage
// error on stderr, as for the daemon.
func TestCheckConfigBadCommandLine(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"check-config", "--delay", "soon"}, io.Discard, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "--delay") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
