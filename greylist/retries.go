package greylist

import (
	"context"
	"sort"
	"time"
)

// Retries is how greylisted triplets came back, read from a store.
type Retries struct {
	// Bounds are the upper bounds of the classes of real delays (from the
	// first deferred attempt to the retry that passed), increasing.
	// Passed[i] counts the triplets that passed after more than
	// Bounds[i-1] and at most Bounds[i]; Passed[len(Bounds)] the longer.
	Bounds []time.Duration
	Passed []int64
	// Greylisted is the cohort of triplets first greylisted in [From, To),
	// long enough ago that real senders had time to come back;
	// NeverRetried those of them that never came back at all.
	From, To                 time.Time
	Greylisted, NeverRetried int64
}

// RetryReporter is a Store that can tell how greylisted triplets came back.
type RetryReporter interface {
	// Retries classes the real delays of the triplets that passed since
	// passedSince by bounds, and counts the triplets first greylisted in
	// [from, to) and those of them never retried (one attempt, no pass).
	Retries(ctx context.Context, passedSince, from, to time.Time, bounds []time.Duration) (Retries, error)
}

// DelayBounds are the default classes of real delays, in reports and in
// the metrics' histogram.
var DelayBounds = []time.Duration{
	5 * time.Minute, 6 * time.Minute, 7 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour, 12 * time.Hour, 24 * time.Hour, 48 * time.Hour,
}

// NewRetries returns empty Retries with the classes of bounds.
func NewRetries(bounds []time.Duration, from, to time.Time) Retries {
	return Retries{Bounds: bounds, Passed: make([]int64, len(bounds)+1), From: from, To: to}
}

// Add counts one triplet that passed after d.
func (r *Retries) Add(d time.Duration) {
	r.Passed[sort.Search(len(r.Bounds), func(i int) bool { return d <= r.Bounds[i] })]++
}

// PassedTotal is how many triplets passed.
func (r Retries) PassedTotal() int64 {
	var n int64
	for _, c := range r.Passed {
		n += c
	}
	return n
}

// NeverRetriedShare is the share of the cohort never retried, 0 to 1, and
// false when the cohort is empty.
func (r Retries) NeverRetriedShare() (float64, bool) {
	if r.Greylisted == 0 {
		return 0, false
	}
	return float64(r.NeverRetried) / float64(r.Greylisted), true
}
