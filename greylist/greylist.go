package greylist

import (
	"context"
	"log/slog"
	"time"
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
	rec, found, err := g.Store.Lookup(ctx, key)
	if err != nil {
		return Unknown, err
	}
	if found && rec.Passed() && !g.Rules.Stale(rec.LastSeen, now) {
		g.touch(key, rec.LastSeen, now)
		return KnownTriplet, nil
	}
	if g.AutoWhitelist <= 0 {
		return Unknown, nil
	}
	c, found, err := g.Store.Client(ctx, key.Client)
	if err != nil {
		return Unknown, err
	}
	if found && c.Passes >= g.AutoWhitelist && !g.Rules.Stale(c.LastSeen, now) {
		g.touch(key, c.LastSeen, now)
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
	rules := g.Rules
	rules.NoClientPasses = g.AutoWhitelist <= 0
	res, err := g.Store.Attempt(ctx, key, rules, now)
	if err != nil {
		return res, err
	}
	if res.Outcome == Passed && g.AutoWhitelist > 0 && g.Log != nil {
		if c, found, err := g.Store.Client(ctx, key.Client); err == nil && found && c.Passes == g.AutoWhitelist {
			g.Log.Info("client auto-whitelisted", "client", key.Client, "passes", c.Passes)
		}
	}
	return res, nil
}

// Maintain purges expired state every interval until ctx ends.
func (g *Greylist) Maintain(ctx context.Context, every time.Duration, now func() time.Time) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		st, err := g.Store.Purge(ctx, g.Rules, now())
		if err != nil {
			if ctx.Err() == nil && g.Log != nil {
				g.Log.Error("purge failed", "err", err)
			}
			continue
		}
		if g.Log != nil {
			g.Log.Info("purged", "triplets", st.Triplets, "unverified", st.Unverified, "clients", st.Clients, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}
