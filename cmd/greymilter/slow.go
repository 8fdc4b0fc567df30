package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/greylist"
)

// slowRefresh is how often what other MX hosts learned of slow retriers
// is read from the shared store (and old evidence purged).
const slowRefresh = time.Minute

// Learning slow but honest retriers (--learn-slow-retriers). What is
// learned is in the store; each pipeline reads it when it is built.
func init() {
	register("Slow retriers", func() module { return &slowFlags{} })
}

type slowFlags struct {
	on         bool
	maxRetry   time.Duration
	minClients int
}

func (f *slowFlags) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.on, "learn-slow-retriers", false, "learn sender domains whose mail comes back only after --retry-window, from several clients, and still passes: their retries pass up to --max-slow-retry after the first attempt")
	fs.Var(newLongDuration(&f.maxRetry, 12*time.Hour), "max-slow-retry", "how long after the first attempt a learned slow retrier's retry still passes")
	fs.IntVar(&f.minClients, "slow-retrier-clients", 3, "clients (subnets) whose late retries of a domain then passed, for the domain to be learned")
	reloadable(fs, "learn-slow-retriers", "max-slow-retry", "slow-retrier-clients")
}

func (f *slowFlags) check() error {
	if f.minClients < 1 {
		return fmt.Errorf("--slow-retrier-clients %d: want 1 or more", f.minClients)
	}
	return nil
}

func (f *slowFlags) steps(p *pipeline) error {
	if !f.on {
		return nil
	}
	rules := p.greylist.Rules
	if f.maxRetry > rules.PurgeUnverified {
		return fmt.Errorf("--max-slow-retry %v is longer than --purge-unverified %v: the triplet of a slow retry would be forgotten before it came back", f.maxRetry, rules.PurgeUnverified)
	}
	log := p.logs.component("slow-retriers")
	if f.maxRetry <= rules.RetryWindow {
		log.Warn("--learn-slow-retriers changes nothing: --max-slow-retry is not longer than --retry-window", "max_slow_retry", f.maxRetry.String(), "retry_window", rules.RetryWindow.String())
	}
	if p.store == nil {
		return nil // check-config: no database
	}
	raw, priv := greylist.Unwrap(p.store)
	store, ok := raw.(greylist.SlowRetryStore)
	if !ok {
		return fmt.Errorf("--learn-slow-retriers: the store of --db cannot keep slow retriers")
	}
	slow := &greylist.SlowRetriers{Store: store, Privacy: priv, MinClients: f.minClients, MaxRetry: f.maxRetry, RefreshEvery: slowRefresh, Log: log}
	if err := slow.Refresh(context.Background(), rules, time.Now()); err != nil {
		return fmt.Errorf("--learn-slow-retriers: %w", err)
	}
	p.greylisting.Slow = slow
	return nil
}

func (f *slowFlags) start(context.Context, *app) error { return nil }
