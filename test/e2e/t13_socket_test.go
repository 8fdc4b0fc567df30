package e2e

import (
	"net"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT13SocketForms: Postfix reaches greymilter on every kind of socket it
// listens on, including libmilter's forms, and on a unix socket that
// replaced a stale one, with --socket-mode letting Postfix's user connect.
// A deferral with greymilter's own text proves the milter answered (an
// unreachable one gets Postfix's "Service unavailable").
func TestT13SocketForms(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix")
	tests := []struct {
		name   string
		socket func(t *testing.T) string
	}{
		{"inet PORT@HOST", func(t *testing.T) string { return "inet:" + strconv.Itoa(harness.FreePort(t)) + "@127.0.0.1" }},
		{"inet6", func(t *testing.T) string { return "inet6:[::1]:" + strconv.Itoa(harness.FreePort(t)) }},
		{"unix", func(t *testing.T) string { return "unix:" + filepath.Join(harness.TempDir(t), "greymilter.sock") }},
		{"local stale socket", func(t *testing.T) string {
			// What a crashed greymilter leaves: a socket nobody listens on.
			path := filepath.Join(harness.TempDir(t), "greymilter.sock")
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
			return "local:" + path
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gm := harness.Greymilter(t, "--delay", delay.String(), "-s", tt.socket(t), "--socket-mode", "0666")
			pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
			rcpt := "t13-" + strconv.Itoa(i) + "@" + harness.Domain
			res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "192.0.2.13", From: "alice@client.example", To: []string{rcpt}})
			greylisted(t, "first delivery through "+gm.Socket, res.Rcpt[0])
		})
	}
}
