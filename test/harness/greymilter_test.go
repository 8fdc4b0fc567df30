package harness

import (
	"testing"
)

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
