package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

// reload reads the configuration again (SIGHUP): the command line, the
// config file, every list and pattern file. When all of it is good, the
// new pipeline replaces the old one between two decisions; otherwise the
// old one stays in force. Options that cannot change at runtime (sockets,
// database, logging) are named as needing a restart.
func (a *app) reload() {
	a.log.Log(context.Background(), levelNotice, "reloading the configuration (SIGHUP)")
	next := newConfig()
	if err := next.fs.Parse(a.cfg.args); err != nil {
		// The same command line parsed at start; it cannot fail now.
		a.reloadFailed([]error{err})
		return
	}
	if errs := next.load(); len(errs) > 0 {
		a.reloadFailed(describeAll(next, errs))
		return
	}
	p, err := a.pipeline(next)
	if err != nil {
		a.reloadFailed(describeAll(next, flatten(err)))
		return
	}
	for _, name := range needRestart(a.cfg.fs, next.fs) {
		a.log.Warn("option changed; it needs a restart to take effect", "option", name,
			"running", a.cfg.fs.Lookup(name).Value.String(), "configured", next.fs.Lookup(name).Value.String())
	}
	a.install(p)
	a.reloads.succeeded(a.clock.Now())
	a.log.Log(context.Background(), levelNotice, "configuration reloaded",
		"delay", next.core.rules.Delay.String(), "retry_window", next.core.rules.RetryWindow.String())
}

func (a *app) reloadFailed(errs []error) {
	a.reloads.failed()
	for _, err := range errs {
		a.log.Error("reload failed; the previous configuration stays in force", "err", err)
	}
}

// describeAll puts each problem's FILE:LINE in front (config.describe).
func describeAll(c *config, errs []error) []error {
	out := make([]error, len(errs))
	for i, err := range errs {
		out[i] = fmt.Errorf("%s", c.describe(err))
	}
	return out
}

// needRestart names the options whose value differs between two readings
// of the configuration and that a reload cannot change.
func needRestart(running, next *pflag.FlagSet) []string {
	var names []string
	next.VisitAll(func(f *pflag.Flag) {
		if isReloadable(f) || commandLineOnly[f.Name] {
			return
		}
		if old := running.Lookup(f.Name); old != nil && old.Value.String() != f.Value.String() {
			names = append(names, f.Name)
		}
	})
	return names
}

// reloadCollectors report the outcome of the last reading of the
// configuration, as Prometheus itself reports its own.
func reloadCollectors(r *reloadStatus) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "greymilter_config_last_reload_success",
			Help: "Whether the last reading of the configuration (start or SIGHUP) succeeded."},
			func() float64 {
				if ok, _ := r.get(); ok {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "greymilter_config_last_reload_timestamp_seconds",
			Help: "When the configuration in force was read (start or the last successful SIGHUP)."},
			func() float64 {
				_, at := r.get()
				return float64(at.Unix())
			}),
	}
}
