package greylist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/greymilter/greymilter/internal/loglevel"
)

// Greylist answers the two questions the engine asks: is this triplet (or
// its client) already known to be good, and what happens to an attempt.
type Greylist struct {
	Store Store
	Rules Rules
	// AutoWhitelist is how many distinct triplets of a client must have
	// passed for the client to skip greylisting; 0 disables it.
	AutoWhitelist int
	Log           *slog.Logger
	// Metrics, if set, are told every store operation and its outcome.
	Metrics *Metrics

	// writeFailed is when the latest attempt failed (unix nanoseconds; 0
	// once an attempt succeeded), with writeErr, so that health fails
	// while the store cannot write. Successes only read it: they allocate
	// nothing.
	writeFailed atomic.Int64
	writeErr    atomic.Pointer[error]
}

// touchGrace is how stale a record's last-seen time may get before a
// known triplet's mail rewrites it: purges count in days, so an hour's
// precision saves nearly every write.
const touchGrace = time.Hour

// Standing says why a triplet needs no greylisting.
type Standing int

const (
	// Unknown: greylisting applies.
	Unknown Standing = iota
	// KnownTriplet: this triplet passed before.
	KnownTriplet
	// AutoWhitelisted: the client passed often enough to be trusted.
	AutoWhitelisted
)

// Known tells whether key needs no greylisting at now.
func (g *Greylist) Known(ctx context.Context, key Key, now time.Time) (Standing, error) {
	return g.known(ctx, key, now, true)
}

// Peek is Known without keeping the entry alive: explaining a decision
// writes nothing.
func (g *Greylist) Peek(ctx context.Context, key Key, now time.Time) (Standing, error) {
	return g.known(ctx, key, now, false)
}

// Preview says what an attempt of key at now under rules (g.Rules, or a
// rules-file line's) would come to, without recording it, and what is
// stored of key.
func (g *Greylist) Preview(ctx context.Context, key Key, rules Rules, now time.Time) (res Result, stored Record, found bool, err error) {
	stored, found, err = g.Store.Lookup(ctx, key)
	if err != nil {
		return Result{}, Record{}, false, err
	}
	return rules.Apply(stored, found, now), stored, found, nil
}

func (g *Greylist) known(ctx context.Context, key Key, now time.Time, touch bool) (Standing, error) {
	start := time.Now()
	rec, found, err := g.Store.Lookup(ctx, key)
	if g.Metrics != nil {
		g.Metrics.lookup.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return Unknown, err
	}
	if found && rec.Passed() && !g.Rules.Stale(rec.LastSeen, now) {
		if touch {
			g.touch(key, rec.LastSeen, now)
		}
		return KnownTriplet, nil
	}
	if g.AutoWhitelist <= 0 {
		return Unknown, nil
	}
	start = time.Now()
	c, found, err := g.Store.Client(ctx, key.Client)
	if g.Metrics != nil {
		g.Metrics.client.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return Unknown, err
	}
	if found && c.Passes >= g.AutoWhitelist && !g.Rules.Stale(c.LastSeen, now) {
		if touch {
			g.touch(key, c.LastSeen, now)
		}
		return AutoWhitelisted, nil
	}
	return Unknown, nil
}

// touch keeps a good entry from being purged, writing its last-seen time
// only when that is older than touchGrace.
func (g *Greylist) touch(key Key, seen, now time.Time) {
	if now.Sub(seen) > touchGrace {
		g.Store.Touch(key, now)
	}
}

// Attempt records an attempt of key at now and says what it comes to.
func (g *Greylist) Attempt(ctx context.Context, key Key, now time.Time) (Result, error) {
	return g.AttemptWith(ctx, key, g.Rules, now)
}

// AttemptWith is Attempt under other timing rules than g's: a rules-file
// line's delay and retry window, or a learned slow retrier's longer window.
func (g *Greylist) AttemptWith(ctx context.Context, key Key, rules Rules, now time.Time) (Result, error) {
	rules.NoClientPasses = g.AutoWhitelist <= 0
	start := time.Now()
	res, err := g.Store.Attempt(ctx, key, rules, now)
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		failure := err // its own variable: taking err's address would move every call's err to the heap
		g.writeErr.Store(&failure)
		g.writeFailed.Store(time.Now().UnixNano())
	case err == nil && g.writeFailed.Load() != 0:
		g.writeFailed.Store(0)
	}
	if g.Metrics != nil {
		g.Metrics.attempt.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return res, err
	}
	if g.Metrics != nil {
		g.Metrics.attempted(res)
	}
	if res.Outcome == Passed && g.AutoWhitelist > 0 && g.Log != nil {
		if c, found, err := g.Store.Client(ctx, key.Client); err == nil && found && c.Passes == g.AutoWhitelist {
			g.Log.Info("client auto-whitelisted", "client", key.Client, "passes", c.Passes)
		}
	}
	return res, nil
}

// Maintain purges expired state every interval until ctx ends, by the
// rules of the Greylist that current returns at each tick: a reload
// changes the rules without restarting the interval, so that reloads more
// frequent than the interval cannot keep every purge from running.
func Maintain(ctx context.Context, every time.Duration, now func() time.Time, current func() *Greylist) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		current().PurgeExpired(ctx, now())
	}
}

// PurgeExpired forgets what g's rules say has expired at now, and logs
// and counts what went.
func (g *Greylist) PurgeExpired(ctx context.Context, now time.Time) {
	start := time.Now()
	st, err := g.Store.Purge(ctx, g.Rules, now)
	if g.Metrics != nil {
		g.Metrics.purge.Observe(time.Since(start).Seconds())
		g.Metrics.purged(st)
	}
	if err != nil {
		if ctx.Err() == nil && g.Log != nil {
			g.Log.Error("purge failed", "err", err)
		}
		return
	}
	if g.Log != nil {
		// A notice: one line a purge interval that an administrator
		// wants without -v.
		g.Log.Log(ctx, loglevel.Notice, "purged", "triplets", st.Triplets, "unverified", st.Unverified, "never_retried", st.NeverRetried, "clients", st.Clients, "took", time.Since(start).Round(time.Millisecond))
	}
}

// Pinger is a store that can tell whether it answers, cheaply.
type Pinger interface {
	// Ping reads a little through the store's own path (for SQLite its
	// writer, so that a stuck writer shows).
	Ping(ctx context.Context) error
}

// Readier is a store that needs time after opening to serve at full speed.
type Readier interface{ Ready() bool }

// Ready tells whether the store serves at full speed (SQLite: its
// in-memory index is filled).
func (g *Greylist) Ready() bool {
	r, ok := g.Store.(Readier)
	return !ok || r.Ready()
}

// writeFailureMemory is how long a failed write keeps health failing when
// no write came after it: a failure that nothing repeated is past.
const writeFailureMemory = time.Minute

// Health tells whether the store answers within ctx and whether its latest
// write, if recent, succeeded: a store that cannot write fails every new
// triplet.
func (g *Greylist) Health(ctx context.Context) error {
	if p, ok := g.Store.(Pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("greylist: store does not answer: %w", err)
		}
	}
	if at := g.writeFailed.Load(); at != 0 && time.Since(time.Unix(0, at)) < writeFailureMemory {
		return fmt.Errorf("greylist: the latest write failed: %w", *g.writeErr.Load())
	}
	return nil
}
