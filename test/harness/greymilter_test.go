package harness

import (
	"testing"
)

func TestParseSocket(t *testing.T) {
	tests := []struct {
		spec, network, addr string
	}{
		{"inet:127.0.0.1:10029", "tcp", "127.0.0.1:10029"},
		{"inet:10029@127.0.0.1", "tcp", "127.0.0.1:10029"},
		{"inet6:[::1]:10029", "tcp", "[::1]:10029"},
		{"inet6:10029@[::1]", "tcp", "[::1]:10029"},
		{"inet6:10029@::1", "tcp", "[::1]:10029"},
		{"unix:/run/greymilter.sock", "unix", "/run/greymilter.sock"},
		{"local:/run/greymilter.sock", "unix", "/run/greymilter.sock"},
		{"inet:127.0.0.1", "", ""},
		{"tcp:127.0.0.1:25", "", ""},
	}
	for _, tt := range tests {
		network, addr, err := parseSocket(tt.spec)
		if network != tt.network || addr != tt.addr || (err != nil) != (tt.network == "") {
			t.Errorf("parseSocket(%q) = %q, %q, %v; want %q, %q", tt.spec, network, addr, err, tt.network, tt.addr)
		}
	}
}

func TestFlagValue(t *testing.T) {
	tests := []struct {
		args  []string
		value string
		ok    bool
	}{
		{[]string{"--delay", "3s", "-s", "unix:/a"}, "unix:/a", true},
		{[]string{"--socket=unix:/a", "--socket", "unix:/b"}, "unix:/b", true},
		{[]string{"--socket-mode", "0666", "-s"}, "", false},
		{nil, "", false},
	}
	for _, tt := range tests {
		value, ok := flagValue(tt.args, "-s", "--socket")
		if value != tt.value || ok != tt.ok {
			t.Errorf("flagValue(%q) = %q, %v; want %q, %v", tt.args, value, ok, tt.value, tt.ok)
		}
	}
}
