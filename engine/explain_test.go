package engine

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Explain gives the verdict the next decision gives, step by step, and
// writes nothing: explaining a new triplet twice leaves it new.
func TestExplainMatchesTheNextDecision(t *testing.T) {
	env := newSuspicionEnv(t, suspicionSetup{suspicious: true, threshold: 2, dnsbl: true, identity: true})
	tests := []struct {
		desc  string
		r     *Request
		want  string
		notes []string // step:key=value in the explanation
	}{
		{"listed", listed, "greylist new", []string{"dnsbl:dnsbl=bl1.test(127.0.0.2)", "suspicion:suspicion=dnsbl", "greylist:stored=none"}},
		{"suspicious", dynamic, "greylist new", []string{"suspicion:check_dynamic=+2:address:octets", "suspicion:check_spf=+2:fail", "suspicion:score=6", "greylist:stored=none"}},
		{"not suspicious", cleanPass, "pass not-suspicious", []string{"spf:spf=pass", "spf:spf_domain=pool.test", "suspicion:score=-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			for range 2 {
				x := env.e.Explain(context.Background(), tt.r)
				if got := x.Verdict.Action.String() + " " + x.Verdict.Reason; got != tt.want {
					t.Fatalf("explained %q, want %q: %+v", got, tt.want, x)
				}
				for _, n := range tt.notes {
					if !hasNote(x, n) {
						t.Errorf("explanation lacks %s: %+v", n, x.Steps)
					}
				}
			}
			v, line := env.decide(t, tt.r)
			if got := v.Action.String() + " " + v.Reason; got != tt.want {
				t.Errorf("decided %q after explaining %q\n%s", got, tt.want, line)
			}
		})
	}
	// The listed triplet is now stored: the explanation says so, and says
	// the retry would be early, as the next decision does.
	env.clock.Advance(time.Minute)
	x := env.e.Explain(context.Background(), listed)
	if x.Verdict.Reason != "early-retry" || !hasNote(x, "greylist:stored=first_seen=") {
		t.Errorf("stored triplet explained as %+v", x)
	}
	if v, line := env.decide(t, listed); v.Reason != "early-retry" {
		t.Errorf("decided %v\n%s", v, line)
	}
	env.clock.Advance(6 * time.Minute)
	if v, line := env.decide(t, listed); v.Reason != "passed" {
		t.Fatalf("decided %v\n%s", v, line)
	}
	if x := env.e.Explain(context.Background(), listed); x.Verdict.Reason != "known" || x.Verdict.Step != "known" || !hasNote(x, "known:stored=") {
		t.Errorf("known triplet explained as %+v", x)
	}
}

// hasNote tells whether step noted key=value (a prefix of it).
func hasNote(x Explanation, want string) bool {
	step, kv, _ := strings.Cut(want, ":")
	for _, s := range x.Steps {
		if s.Step != step {
			continue
		}
		for _, n := range s.Notes {
			if strings.HasPrefix(n.Key+"="+n.Value, kv) {
				return true
			}
		}
	}
	return false
}
