package greylist

import (
	"testing"
	"time"
)

// Late says how long after its first attempt a never-passed triplet came
// back past the retry window, and only then.
func TestApplyLate(t *testing.T) {
	r := Rules{Delay: 5 * time.Minute, RetryWindow: time.Hour, MaxAge: 24 * time.Hour}
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	fresh := Record{FirstSeen: t0, LastSeen: t0, Attempts: 1}
	if res := r.Apply(fresh, true, t0.Add(3*time.Hour)); !res.Restarted || res.Late != 3*time.Hour {
		t.Errorf("late retry: %+v, want restarted, late 3h", res)
	}
	if res := r.Apply(fresh, true, t0.Add(30*time.Minute)); res.Late != 0 || res.Outcome != Passed {
		t.Errorf("retry within the window: %+v", res)
	}
	passed := fresh
	passed.PassedAt = t0.Add(10 * time.Minute)
	if res := r.Apply(passed, true, t0.Add(48*time.Hour)); !res.Restarted || res.Late != 0 {
		t.Errorf("stale passed triplet: %+v, want restarted without late", res)
	}
	if res := r.Apply(Record{}, false, t0); res.Late != 0 {
		t.Errorf("new triplet: %+v", res)
	}
}

func TestSenderDomain(t *testing.T) {
	for in, want := range map[string]string{"a@example.org": "example.org", "": "", "postmaster": "", "a@b@c.example": "c.example"} {
		if got := SenderDomain(in); got != want {
			t.Errorf("SenderDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
