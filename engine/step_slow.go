package engine

import (
	"context"

	"github.com/greymilter/greymilter/greylist"
)

// attempt records the greylisting attempt of key, through the slow
// retriers' learning when it is on. They count clients by subnet (or
// address), not by the triplet's SPF identity, which names the sender's
// domain and would make every client of a domain one.
func (g *Greylisting) attempt(ctx context.Context, d *Decision, rl greylist.Rules, key greylist.Key) (greylist.Result, error) {
	if g.Slow == nil {
		return g.Greylist.AttemptWith(ctx, key, rl, d.Now)
	}
	res, err := g.Slow.Attempt(ctx, g.Greylist, rl, key, g.Keyer.Client(d.Req.ClientAddr), d.Now)
	if err == nil && res.Outcome == greylist.Passed && res.Delayed > rl.RetryWindow {
		d.Note("slow_retrier", true)
	}
	return res, err
}
