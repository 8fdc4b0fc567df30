package engine

import (
	"context"

	"github.com/greymilter/greymilter/greylist"
)

// attempt records the greylisting attempt of key, through the slow
// retriers' learning when it is on. They count clients by subnet (or
// address), not by the triplet's SPF identity, which names the sender's
// domain and would make every client of a domain one.
func (g *Greylisting) attempt(ctx context.Context, d *Decision, key greylist.Key) (greylist.Result, error) {
	if g.Slow == nil {
		return g.Greylist.Attempt(ctx, key, d.Now)
	}
	res, err := g.Slow.Attempt(ctx, g.Greylist, key, g.Keyer.Client(d.Req.ClientAddr), d.Now)
	if err == nil && res.Outcome == greylist.Passed && res.Delayed > g.Greylist.Rules.RetryWindow {
		d.Note("slow_retrier", true)
	}
	return res, err
}
