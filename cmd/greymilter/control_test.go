package main

import "testing"

func TestDefaultControlSocket(t *testing.T) {
	for _, tt := range []struct{ db, given, want string }{
		{"/var/lib/greymilter/greymilter.db", "", "/var/lib/greymilter/greymilter.db.ctl"},
		{"greymilter.db", "none", ""},
		{":memory:", "", ""},
		{"postgres://db1/greylist", "", ""},
		{"host=db1 dbname=greylist", "", ""},
		{"postgres://db1/greylist", "unix:/run/greymilter/ctl", "/run/greymilter/ctl"},
		{"g.db", "/run/g.ctl", "/run/g.ctl"},
	} {
		if got := defaultControlSocket(tt.db, tt.given); got != tt.want {
			t.Errorf("db %q, --control-socket %q: %q, want %q", tt.db, tt.given, got, tt.want)
		}
	}
}
