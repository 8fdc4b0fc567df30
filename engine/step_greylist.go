package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/rules"
)

// DefaultGreylistText is the deferral text; {SECONDS} is the true remaining wait.
const DefaultGreylistText = "Greylisted, please try again in {SECONDS} seconds"

// Greylisting holds what the known and greylist steps share.
type Greylisting struct {
	Greylist *greylist.Greylist
	Keyer    greylist.Keyer
	Text     string // deferral template; DefaultGreylistText when empty
	Hostname string // named in the X-Greylist header
	// Mode is --mode: ModeSuspicious or ModeAlways (also ModeUnset).
	Mode rules.Mode
	// AutoPenalty: --penalty was not given, so a greylisted sender in
	// suspicious mode (by --mode or its rule) gets the delay again for
	// every early retry (bley's default), one in mode always none.
	AutoPenalty bool
	// Slow, if set, learns slow but honest retriers (step_slow.go).
	Slow *greylist.SlowRetriers
}

// rules are the timing rules for d: the flags', changed by d's rule.
func (g *Greylisting) rules(d *Decision) (greylist.Rules, rules.Mode) {
	r := g.Greylist.Rules
	mode := d.mode(g.Mode)
	if d.Rule != nil {
		r.Delay = or(d.Rule.Delay, r.Delay)
		r.RetryWindow = or(d.Rule.RetryWindow, r.RetryWindow)
	}
	if g.AutoPenalty {
		r.Penalty = 0
		if mode == rules.ModeSuspicious {
			r.Penalty = min(r.Delay, r.MaxWait)
		}
	}
	return r, mode
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
	known := s.g.Greylist.Known
	if d.ReadOnly {
		known = s.g.Greylist.Peek
	}
	key := s.g.key(d)
	st, err := known(ctx, key, d.Now)
	if err != nil {
		return false, err
	}
	if st == greylist.Unknown && d.Identity != "" {
		// What the client earned under its subnet (before SPF named it,
		// or while SPF was failing) still counts.
		key.Client = s.g.Keyer.Client(d.Req.ClientAddr)
		if st, err = known(ctx, key, d.Now); err != nil {
			return false, err
		}
	}
	if d.ReadOnly {
		if err := s.g.noteStored(ctx, d, key); err != nil {
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
	rl, mode := s.g.rules(d)
	if mode == rules.ModeNever {
		d.Verdict = Verdict{Action: Pass, Reason: "rule-never"}
		return true, nil
	}
	key := s.g.key(d)
	var res greylist.Result
	var err error
	if d.ReadOnly {
		res, _, _, err = s.g.Greylist.Preview(ctx, key, rl, d.Now)
		if err == nil {
			err = s.g.noteStored(ctx, d, key)
		}
	} else {
		res, err = s.g.attempt(ctx, d, rl, key)
	}
	if err != nil {
		return false, err
	}
	d.Note("triplet_client", key.Client)
	if res.Restarted {
		d.Note("restarted", true)
	}
	switch res.Outcome {
	case greylist.New, greylist.EarlyRetry:
		text := or(s.g.Text, DefaultGreylistText)
		if d.Rule != nil {
			text = or(d.Rule.Text, text)
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

// noteStored notes, for an explanation, the triplet's key and what is
// stored of it and of its client.
func (g *Greylisting) noteStored(ctx context.Context, d *Decision, key greylist.Key) error {
	rec, found, err := g.Greylist.Store.Lookup(ctx, key)
	if err != nil {
		return err
	}
	d.Note("triplet", fmt.Sprintf("%s <%s> <%s>", key.Client, key.Sender, key.Recipient))
	if !found {
		d.Note("stored", "none")
	} else {
		passed := "never"
		if rec.Passed() {
			passed = rec.PassedAt.UTC().Format(time.RFC3339)
		}
		d.Note("stored", fmt.Sprintf("first_seen=%s last_seen=%s attempts=%d passed_at=%s",
			rec.FirstSeen.UTC().Format(time.RFC3339), rec.LastSeen.UTC().Format(time.RFC3339), rec.Attempts, passed))
	}
	c, found, err := g.Greylist.Store.Client(ctx, key.Client)
	if err != nil {
		return err
	}
	if found {
		d.Note("client_passes", fmt.Sprintf("%d (auto-whitelisted at %d)", c.Passes, g.Greylist.AutoWhitelist))
	}
	return nil
}
