package greylist

import "time"

// Rules are the timing rules of greylisting.
type Rules struct {
	// Delay is how long a new triplet must wait before a retry passes.
	Delay time.Duration
	// RetryWindow is how long after first being seen a never-passed
	// triplet may still pass; after it the triplet starts again.
	RetryWindow time.Duration
	// Penalty is added to the wait for every retry before the delay.
	Penalty time.Duration
	// MaxWait caps the wait that penalties can grow to.
	MaxWait time.Duration
	// MaxAge is how long a triplet (and an auto-whitelisted client) is
	// remembered after it was last seen.
	MaxAge time.Duration
	// PurgeUnverified is how long a triplet that never passed is kept.
	PurgeUnverified time.Duration
	// NoClientPasses leaves the passes of clients uncounted, when
	// auto-whitelisting, their only reader, is off: a pass then writes one
	// row, not two.
	NoClientPasses bool
}

// DefaultRules are postgrey's and bley's customary values.
var DefaultRules = Rules{
	Delay:           5 * time.Minute,
	RetryWindow:     48 * time.Hour,
	MaxWait:         12 * time.Hour,
	MaxAge:          35 * 24 * time.Hour,
	PurgeUnverified: 48 * time.Hour,
}

// Record is what is remembered of a triplet.
type Record struct {
	FirstSeen time.Time // start of the current greylisting attempt
	LastSeen  time.Time
	PassedAt  time.Time // zero until the triplet passed
	Attempts  int       // deliveries tried since FirstSeen, the first included
}

// Passed tells whether the triplet has passed greylisting.
func (r Record) Passed() bool { return !r.PassedAt.IsZero() }

// Outcome is what the rules decided for one attempt.
type Outcome int

const (
	// New: first attempt (or first after the retry window); deferred.
	New Outcome = iota
	// EarlyRetry: retried before the wait was over; deferred.
	EarlyRetry
	// Passed: retried after the wait; passes now, for the first time.
	Passed
	// Known: passed before; passes.
	Known
)

var outcomeNames = [...]string{New: "new", EarlyRetry: "early-retry", Passed: "passed", Known: "known"}

func (o Outcome) String() string { return outcomeNames[o] }

// Deferred tells whether the outcome answers a temporary error.
func (o Outcome) Deferred() bool { return o == New || o == EarlyRetry }

// Result is the outcome of one attempt.
type Result struct {
	Outcome   Outcome
	Wait      time.Duration // remaining wait, for deferrals
	Delayed   time.Duration // how long the mail was held, for Passed
	Restarted bool          // a stale attempt was started over
	// Late is, when a triplet that never passed is started over because
	// it came back after the retry window, how long after its first
	// attempt it came back; 0 otherwise.
	Late   time.Duration
	Record Record // the record as stored after the attempt
}

// required is the wait a triplet needs after attempts tries.
func (r Rules) required(attempts int) time.Duration {
	w := r.Delay
	if r.Penalty > 0 && attempts > 1 {
		w += time.Duration(attempts-1) * r.Penalty
		if limit := max(r.MaxWait, r.Delay); w > limit {
			w = limit
		}
	}
	return w
}

// Apply decides an attempt at time now of a triplet whose stored record is
// rec (found false for a triplet never seen) and returns the result with
// the record to store.
func (r Rules) Apply(rec Record, found bool, now time.Time) Result {
	if found && rec.Passed() && !r.Stale(rec.LastSeen, now) {
		rec.LastSeen = now
		return Result{Outcome: Known, Record: rec}
	}
	// A passed triplet past max-age, not purged yet, is forgotten as the
	// purge would have; one that never passed starts again after the window.
	restarted := found && (rec.Passed() || now.Sub(rec.FirstSeen) > r.RetryWindow)
	if !found || restarted {
		var late time.Duration
		if restarted && !rec.Passed() {
			late = now.Sub(rec.FirstSeen)
		}
		rec = Record{FirstSeen: now, LastSeen: now, Attempts: 1}
		return Result{Outcome: New, Wait: r.Delay, Restarted: restarted, Late: late, Record: rec}
	}
	elapsed := now.Sub(rec.FirstSeen)
	rec.LastSeen = now
	if need := r.required(rec.Attempts); elapsed >= need {
		rec.PassedAt = now
		rec.Attempts++
		return Result{Outcome: Passed, Delayed: elapsed, Record: rec}
	}
	rec.Attempts++
	wait := r.required(rec.Attempts) - elapsed
	return Result{Outcome: EarlyRetry, Wait: wait, Record: rec}
}

// Stale tells whether something last seen at seen is past max-age at now.
func (r Rules) Stale(seen, now time.Time) bool {
	return r.MaxAge > 0 && now.Sub(seen) > r.MaxAge
}
