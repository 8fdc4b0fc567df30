package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/resolver"
)

// pipeline is the decision pipeline of one configuration, built at start
// and again on every reload from a fresh reading of the configuration, on
// the store and resolver that live as long as the process.
type pipeline struct {
	logs     *logging
	resolver *resolver.Resolver
	store    greylist.Store
	// dnsTimeout is a decision's DNS budget (--dns-timeout).
	dnsTimeout time.Duration

	steps [numSlots][]engine.Step
	// greylist holds the greylisting rules; maintenance purges by them.
	greylist *greylist.Greylist
	// greylisting is the known and greylist steps' setting; the checks
	// module gives it the mode.
	greylisting *engine.Greylisting
	// throttle is the rate limit of new triplets, or nil (throttle.go).
	throttle *engine.Throttle
	// dnsLists are self-tested once the pipeline is in force, and then
	// every selfTestInterval.
	dnsLists         []*dnsbl.List
	selfTestInterval time.Duration
	compiled         *engine.Pipeline
}

func (p *pipeline) add(s slot, step engine.Step) { p.steps[s] = append(p.steps[s], step) }

// newPipeline builds the pipeline cfg describes: the core steps, then each
// module's. It reports the problems of every module, not only the first.
// store may be nil to check a configuration without opening the database.
func newPipeline(cfg *config, logs *logging, res *resolver.Resolver, store greylist.Store) (*pipeline, error) {
	c := &cfg.core
	p := &pipeline{logs: logs, resolver: res, store: store, dnsTimeout: cfg.resolver.timeout}
	// Every module is built even after a problem, so that all are
	// reported at once.
	trusted, err := c.trustedNetworks()
	errs := []error{err}
	p.greylist = &greylist.Greylist{Store: store, Rules: c.rules, AutoWhitelist: c.autoWhitelist, Log: logs.component("store")}
	g := &engine.Greylisting{
		Greylist: p.greylist,
		Keyer:    greylist.Keyer{IPv4Prefix: c.ipv4Prefix, IPv6Prefix: c.ipv6Prefix, ByHost: c.byHost},
		Text:     c.greylistText,
		Hostname: c.hostname,
		// The penalty follows the mode unless --penalty was given (on
		// the command line or in the config file, 0 included).
		AutoPenalty: !cfg.fs.Changed("penalty"),
	}
	p.greylisting = g
	p.add(slotBypass, &engine.Bypass{Trusted: trusted})
	p.add(slotKnown, g.KnownStep())
	p.add(slotGreylist, g.GreylistStep())
	for _, m := range cfg.modules {
		errs = append(errs, m.steps(p))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var steps []engine.Step
	for _, ss := range p.steps {
		steps = append(steps, ss...)
	}
	onError := engine.OnErrorTempfail
	if c.onError == "accept" {
		onError = engine.OnErrorAccept
	}
	p.compiled = &engine.Pipeline{Steps: steps, OnError: onError, DryRun: c.dryRun, Timeout: c.decisionTimeout, DNSTimeout: cfg.resolver.timeout}
	return p, nil
}

// pipeline builds the pipeline of cfg on the app's store and resolver.
func (a *app) pipeline(cfg *config) (*pipeline, error) {
	p, err := newPipeline(cfg, a.logs, a.resolver, a.keyed)
	if err != nil {
		return nil, err
	}
	p.greylist.Metrics = a.greylistMetrics
	for _, l := range p.dnsLists {
		l.Instrument(a.dnsListMetrics)
	}
	return p, nil
}

// install puts p in force: the engine decides with it from the next
// decision on, purges follow its rules, its DNS lists are self-tested.
func (a *app) install(p *pipeline) {
	a.engine.SetPipeline(p.compiled)
	a.inForce.Store(p)
	a.stopMaintenance()
	ctx, cancel := context.WithCancel(context.Background())
	m := &a.maintenance
	m.Lock()
	m.stop = cancel
	// The RFC 5782 self-test of every list, at once and then every
	// interval, without holding anything up; failures are logged
	// warnings and counted (an allow list is also suspended).
	for _, l := range p.dnsLists {
		m.wg.Go(func() { l.RunSelfTests(ctx, p.selfTestInterval) })
	}
	m.Unlock()
}

// stopMaintenance stops the self-tests of the pipeline in force and waits
// for them.
func (a *app) stopMaintenance() {
	m := &a.maintenance
	m.Lock()
	defer m.Unlock()
	if m.stop != nil {
		m.stop()
		m.wg.Wait()
		m.stop = nil
	}
}

// reloadStatus is the outcome of the last reading of the configuration
// and when one last succeeded, as the metrics show them.
type reloadStatus struct {
	mu sync.Mutex
	ok bool
	at time.Time
}

func (r *reloadStatus) succeeded(at time.Time) {
	r.mu.Lock()
	r.ok, r.at = true, at
	r.mu.Unlock()
}

func (r *reloadStatus) failed() {
	r.mu.Lock()
	r.ok = false
	r.mu.Unlock()
}

func (r *reloadStatus) get() (ok bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, r.at
}
