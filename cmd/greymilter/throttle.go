package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/engine"
)

// The rate limit of new triplets per client subnet (--max-new-triplets).
// Its counts belong to the pipeline: a reload starts them again.
func init() {
	register("Rate limit", func() module { return &throttleFlags{} })
}

type throttleFlags struct {
	max  int
	dur  time.Duration
	text string
}

func (f *throttleFlags) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&f.max, "max-new-triplets", 0, "a client subnet that opens more than this many new triplets in a minute gets 421 4.7.0 for --throttle-time (0: no limit)")
	fs.Var(newDuration(&f.dur, 10*time.Minute), "throttle-time", "how long a client subnet over --max-new-triplets is refused")
	fs.StringVar(&f.text, "throttle-text", engine.DefaultThrottleText, "reply text while throttled; {CLIENT} {SENDER} {RECIPIENT} {SECONDS} are replaced")
	reloadable(fs, "max-new-triplets", "throttle-time", "throttle-text")
}

func (f *throttleFlags) check() error {
	if f.max < 0 {
		return fmt.Errorf("--max-new-triplets %d: want 0 (no limit) or more", f.max)
	}
	if f.max > 0 && f.dur <= 0 {
		return fmt.Errorf("--throttle-time: must be more than 0 with --max-new-triplets")
	}
	return nil
}

func (f *throttleFlags) steps(p *pipeline) error {
	if f.max == 0 {
		return nil
	}
	p.throttle = &engine.Throttle{Max: f.max, For: f.dur, Text: f.text, Log: p.logs.component("throttle")}
	p.add(slotThrottle, p.greylisting.ThrottleStep(p.throttle))
	return nil
}

func (f *throttleFlags) start(_ context.Context, a *app) error {
	a.metrics.MustRegister(throttleCollectors(func() *engine.Throttle {
		if p := a.inForce.Load(); p != nil {
			return p.throttle
		}
		return nil
	}, a.clock.Now)...)
	return nil
}

// throttleCollectors read, at scrape time, the counters of the rate limit
// in force (zero without one).
func throttleCollectors(inForce func() *engine.Throttle, now func() time.Time) []prometheus.Collector {
	read := func(f func(t *engine.Throttle) int64) func() float64 {
		return func() float64 {
			if t := inForce(); t != nil {
				return float64(f(t))
			}
			return 0
		}
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "greymilter_throttle_episodes_total", Help: "Times a client subnet went over --max-new-triplets and was throttled (since start or the last reload)."},
			read(func(t *engine.Throttle) int64 { return t.Episodes() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "greymilter_throttle_refused_total", Help: "Mails refused with 421 while their subnet was throttled (since start or the last reload)."},
			read(func(t *engine.Throttle) int64 { return t.Refused() })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "greymilter_throttled_subnets", Help: "Client subnets throttled now."},
			read(func(t *engine.Throttle) int64 { return int64(t.Throttled(now())) })),
	}
}
