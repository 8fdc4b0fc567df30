package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// DefaultGreylistText is the deferral text; {SECONDS} is the true remaining wait.
const DefaultGreylistText = "Greylisted, please try again in {SECONDS} seconds"

// Greylisting holds what the known and greylist steps share.
type Greylisting struct {
	Greylist *greylist.Greylist
	Keyer    greylist.Keyer
	Text     string // deferral template; DefaultGreylistText when empty
	Hostname string // named in the X-Greylist header
}

func (g *Greylisting) key(d *Decision) greylist.Key {
	k := g.Keyer.Key(d.Req.ClientAddr, d.Req.Sender, d.Req.Recipient)
	if d.Identity != "" {
		k.Client = d.Identity
	}
	return k
}

// KnownStep passes triplets that passed before and auto-whitelisted
// clients, before the suspicion checks spend lookups on them. It runs after
// the DNS lists' reject and mark: a listing is newer than a past pass.
func (g *Greylisting) KnownStep() Step { return knownStep{g} }

// GreylistStep defers new triplets and passes those that waited.
func (g *Greylisting) GreylistStep() Step { return greylistStep{g} }

type knownStep struct{ g *Greylisting }

func (knownStep) Name() string { return "known" }

func (s knownStep) Run(ctx context.Context, d *Decision) (bool, error) {
	key := s.g.key(d)
	st, err := s.g.Greylist.Known(ctx, key, d.Now)
	if err != nil {
		return false, err
	}
	if st == greylist.Unknown && d.Identity != "" {
		// What the client earned under its subnet (before SPF named it,
		// or while SPF was failing) still counts.
		key.Client = s.g.Keyer.Client(d.Req.ClientAddr)
		if st, err = s.g.Greylist.Known(ctx, key, d.Now); err != nil {
			return false, err
		}
	}
	switch st {
	case greylist.KnownTriplet:
		d.Verdict = Verdict{Action: Pass, Reason: "known"}
		return true, nil
	case greylist.AutoWhitelisted:
		d.Verdict = Verdict{Action: Pass, Reason: "auto-whitelist"}
		return true, nil
	}
	return false, nil
}

type greylistStep struct{ g *Greylisting }

func (greylistStep) Name() string { return "greylist" }

func (s greylistStep) Run(ctx context.Context, d *Decision) (bool, error) {
	key := s.g.key(d)
	res, err := s.g.Greylist.Attempt(ctx, key, d.Now)
	if err != nil {
		return false, err
	}
	d.Note("triplet_client", key.Client)
	if res.Restarted {
		d.Note("restarted", true)
	}
	switch res.Outcome {
	case greylist.New, greylist.EarlyRetry:
		text := s.g.Text
		if text == "" {
			text = DefaultGreylistText
		}
		d.Verdict = Verdict{Action: Defer, Code: 451, ECode: "4.7.1", Wait: res.Wait, Reason: res.Outcome.String(),
			Text: ExpandTemplate(text, d.Req, res.Wait)}
	case greylist.Passed:
		d.Note("delayed", int64(res.Delayed/time.Second))
		d.Verdict = Verdict{Action: Pass, Reason: "passed", Headers: []Header{{
			Name:  "X-Greylist",
			Value: fmt.Sprintf("delayed %d seconds by greymilter at %s; %s", int64(res.Delayed/time.Second), s.g.Hostname, d.Now.Format(time.RFC1123Z)),
		}}}
	default:
		d.Verdict = Verdict{Action: Pass, Reason: res.Outcome.String()}
	}
	return true, nil
}
