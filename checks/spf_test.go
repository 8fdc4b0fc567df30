package checks

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
)

func TestSPF(t *testing.T) {
	r, _ := newResolver(t, "testdata/spf.zone")
	s := &SPF{Resolver: r, Timeout: time.Second}
	tests := []struct {
		desc         string
		addr         string
		helo, sender string
		result       spf.Result
		domain       string
		permissive   bool
		score        int
	}{
		{"pass", "192.0.2.10", "mail.example.org", "alice@pass.spf.test", spf.Pass, "pass.spf.test", false, -1},
		{"pass, sender in capitals", "192.0.2.10", "mail.example.org", "Alice@PASS.SPF.TEST.", spf.Pass, "pass.spf.test", false, -1},
		{"pass, IPv4-mapped client", "::ffff:192.0.2.10", "mail.example.org", "alice@pass.spf.test", spf.Pass, "pass.spf.test", false, -1},
		{"pass, IPv6", "2001:db8::25", "mail.example.org", "alice@pass.spf.test", spf.Pass, "pass.spf.test", false, -1},
		{"pass through include", "192.0.2.10", "mail.example.org", "alice@include.spf.test", spf.Pass, "include.spf.test", false, -1},
		{"pass through mx", "198.51.100.25", "mail.example.org", "alice@viamx.spf.test", spf.Pass, "viamx.spf.test", false, -1},
		{"fail", "203.0.113.5", "mail.example.org", "alice@pass.spf.test", spf.Fail, "pass.spf.test", false, 2},
		{"fail, IPv6", "2001:db9::25", "mail.example.org", "alice@pass.spf.test", spf.Fail, "pass.spf.test", false, 2},
		{"softfail", "203.0.113.5", "mail.example.org", "alice@softfail.spf.test", spf.SoftFail, "softfail.spf.test", false, 1},
		{"neutral", "203.0.113.5", "mail.example.org", "alice@neutral.spf.test", spf.Neutral, "neutral.spf.test", false, 0},
		{"no policy", "203.0.113.5", "mail.example.org", "alice@none.spf.test", spf.None, "none.spf.test", false, 0},
		{"domain does not exist", "203.0.113.5", "mail.example.org", "alice@nowhere.spf.test", spf.None, "nowhere.spf.test", false, 0},
		{"+all proves nothing", "203.0.113.5", "mail.example.org", "alice@permissive.spf.test", spf.Pass, "permissive.spf.test", true, 0},
		{"broken policy", "203.0.113.5", "mail.example.org", "alice@broken.spf.test", spf.PermError, "broken.spf.test", false, 0},
		{"two policies", "203.0.113.5", "mail.example.org", "alice@twice.spf.test", spf.PermError, "twice.spf.test", false, 0},
		{"server failure", "192.0.2.10", "mail.example.org", "alice@failing.spf.test", spf.TempError, "failing.spf.test", false, 0},
		{"null sender: the HELO name", "198.51.100.25", "mx.spf.test", "", spf.Pass, "mx.spf.test", false, -1},
		{"null sender: the HELO name fails", "203.0.113.5", "MX.spf.test.", "", spf.Fail, "mx.spf.test", false, 2},
		{"null sender, address literal HELO", "203.0.113.5", "[203.0.113.5]", "", spf.None, "", false, 0},
		{"null sender, single-label HELO", "203.0.113.5", "localhost", "", spf.None, "", false, 0},
		{"sender with an address literal", "203.0.113.5", "mail.example.org", "alice@[203.0.113.5]", spf.None, "", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			res := s.Check(t.Context(), netip.MustParseAddr(tt.addr), tt.helo, tt.sender)
			if res.Result != tt.result || res.Domain != tt.domain || res.Permissive != tt.permissive {
				t.Fatalf("Check = %+v, want %s for %q (permissive %v)", res, tt.result, tt.domain, tt.permissive)
			}
			if (res.Err != nil) != (tt.result == spf.TempError || tt.result == spf.PermError) {
				t.Errorf("Err = %v for %s", res.Err, res.Result)
			}
			if sc := SPFScore(string(res.Effective()), DefaultScores); sc.Score != tt.score || sc.Check != "spf" {
				t.Errorf("score %+v, want %d", sc, tt.score)
			}
		})
	}
}

// A policy server that never answers makes SPF abstain within its
// deadline instead of holding the mail.
func TestSPFTimeout(t *testing.T) {
	r, srv := newResolver(t, "testdata/spf.zone")
	s := &SPF{Resolver: r, Timeout: 200 * time.Millisecond}
	start := time.Now()
	res := s.Check(t.Context(), netip.MustParseAddr("192.0.2.10"), "mail.example.org", "alice@slow.spf.test")
	if res.Result != spf.TempError || res.Err == nil {
		t.Fatalf("Check = %+v, want temperror", res)
	}
	// The deadline is what ended it, not the resolver's own 500ms timeout.
	if took := time.Since(start); took > 450*time.Millisecond {
		t.Errorf("took %v with a 200ms deadline", took)
	}
	if srv.Queries("slow.spf.test", 16) == 0 { // TXT
		t.Error("no TXT query reached the server")
	}

	// The caller's context bounds it too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if res := (&SPF{Resolver: r}).Check(ctx, netip.MustParseAddr("192.0.2.10"), "mail.example.org", "alice@slow.spf.test"); res.Result != spf.TempError {
		t.Fatalf("cancelled: %+v, want temperror", res)
	}
}

func TestSPFScore(t *testing.T) {
	s := Scores{SPFFail: 3, SPFSoftFail: 2, SPFPass: -2}
	for result, want := range map[string]Result{
		"fail":      {"spf", 3, "fail"},
		"softfail":  {"spf", 2, "softfail"},
		"pass":      {"spf", -2, "pass"},
		"neutral":   {"spf", 0, "neutral"},
		"none":      {"spf", 0, "none"},
		"temperror": {"spf", 0, "temperror"},
		"permerror": {"spf", 0, "permerror"},
		"":          {"spf", 0, "not-checked"},
	} {
		if got := SPFScore(result, s); got != want {
			t.Errorf("SPFScore(%q) = %+v, want %+v", result, got, want)
		}
	}
}
