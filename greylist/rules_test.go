package greylist

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestRulesApply(t *testing.T) {
	base := Rules{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxWait: 12 * time.Hour, MaxAge: 35 * 24 * time.Hour}
	withPenalty := base
	withPenalty.Penalty = time.Minute
	capped := withPenalty
	capped.MaxWait = 7 * time.Minute

	type attempt struct {
		at      time.Duration // since t0
		outcome Outcome
		wait    time.Duration
		delayed time.Duration
	}
	tests := []struct {
		name     string
		rules    Rules
		attempts []attempt
	}{
		{"first seen", base, []attempt{{0, New, 5 * time.Minute, 0}}},
		{"early retry", base, []attempt{{0, New, 5 * time.Minute, 0}, {2 * time.Minute, EarlyRetry, 3 * time.Minute, 0}}},
		{"pass after the delay, then known", base, []attempt{
			{0, New, 5 * time.Minute, 0},
			{5 * time.Minute, Passed, 0, 5 * time.Minute},
			{6 * time.Minute, Known, 0, 0},
			{30 * 24 * time.Hour, Known, 0, 0},
		}},
		{"early retries then pass", base, []attempt{
			{0, New, 5 * time.Minute, 0},
			{time.Minute, EarlyRetry, 4 * time.Minute, 0},
			{4 * time.Minute, EarlyRetry, time.Minute, 0},
			{10 * time.Minute, Passed, 0, 10 * time.Minute},
		}},
		{"penalty grows the wait", withPenalty, []attempt{
			{0, New, 5 * time.Minute, 0},
			{time.Minute, EarlyRetry, 5 * time.Minute, 0},     // needs 6m now
			{2 * time.Minute, EarlyRetry, 5 * time.Minute, 0}, // needs 7m
			{6 * time.Minute, EarlyRetry, 2 * time.Minute, 0}, // needs 8m: not yet
			{8 * time.Minute, Passed, 0, 8 * time.Minute},
		}},
		{"penalty capped by max-wait", capped, []attempt{
			{0, New, 5 * time.Minute, 0},
			{time.Minute, EarlyRetry, 5 * time.Minute, 0},
			{2 * time.Minute, EarlyRetry, 5 * time.Minute, 0},
			{3 * time.Minute, EarlyRetry, 4 * time.Minute, 0}, // would need 8m, capped at 7m
			{7 * time.Minute, Passed, 0, 7 * time.Minute},
		}},
		{"passed but past max-age starts again", base, []attempt{
			{0, New, 5 * time.Minute, 0},
			{5 * time.Minute, Passed, 0, 5 * time.Minute},
			{36 * 24 * time.Hour, New, 5 * time.Minute, 0},
		}},
		{"retry after the window starts again", base, []attempt{
			{0, New, 5 * time.Minute, 0},
			{49 * time.Hour, New, 5 * time.Minute, 0},
			{49*time.Hour + time.Minute, EarlyRetry, 4 * time.Minute, 0},
			{49*time.Hour + 5*time.Minute, Passed, 0, 5 * time.Minute},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec Record
			found := false
			for i, a := range tt.attempts {
				res := tt.rules.Apply(rec, found, t0.Add(a.at))
				if res.Outcome != a.outcome || res.Wait != a.wait || res.Delayed != a.delayed {
					t.Fatalf("attempt %d at +%v: got %v wait %v delayed %v, want %v wait %v delayed %v",
						i, a.at, res.Outcome, res.Wait, res.Delayed, a.outcome, a.wait, a.delayed)
				}
				if !res.Record.LastSeen.Equal(t0.Add(a.at)) {
					t.Fatalf("attempt %d: last seen %v not updated", i, res.Record.LastSeen)
				}
				rec, found = res.Record, true
			}
		})
	}
}
