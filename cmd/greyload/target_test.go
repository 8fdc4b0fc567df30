package main

import "testing"

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"inet:127.0.0.1:10029", "inet:127.0.0.1:10029", true},
		{"127.0.0.1:10029", "inet:127.0.0.1:10029", true},
		{"inet:10029@127.0.0.1", "inet:127.0.0.1:10029", true},
		{"inet:localhost:10029", "inet:127.0.0.1:10029", true},
		{"inet:127.1.2.3:10029", "inet:127.1.2.3:10029", true},
		{"inet6:[::1]:10029", "inet6:[::1]:10029", true},
		{"unix:/run/greymilter.sock", "unix:/run/greymilter.sock", true},
		{"inet:192.0.2.1:10029", "", false},
		{"inet:[::ffff:192.0.2.1]:10029", "", false},
		{"inet:mail.example.com:10029", "", false},
		{"inet:10029", "", false}, // every address: not a place to connect to
		{"10.0.0.1:25", "", false},
		{"inet:127.0.0.1", "", false},
	}
	for _, tt := range tests {
		got, err := parseTarget(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("parseTarget(%q): err %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && got.String() != tt.want {
			t.Errorf("parseTarget(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
