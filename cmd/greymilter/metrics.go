package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/resolver"
)

// Prometheus metrics over HTTP, off unless --metrics-listen is given.
//
// Every part of greymilter registers its metrics on a.metrics, the app's
// registry, whether or not they are served: a package defines its
// prometheus collectors (bound to their labels once, so that counting on
// the decision path allocates nothing) and cmd/greymilter registers them
// where it builds that part, e.g. a.metrics.MustRegister(x.Collectors()...).
// State that already lives elsewhere (counts kept by the resolver, the
// store) is read at scrape time by a collector of *Func metrics.
func init() {
	register("Metrics", func() module { return &metricsFlags{} })
}

type metricsFlags struct{ addr string }

func (f *metricsFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (HOST:PORT, keep it on loopback), with /healthz and /readyz")
}

func (f *metricsFlags) check() error          { return nil }
func (f *metricsFlags) steps(*pipeline) error { return nil }

func (f *metricsFlags) start(ctx context.Context, a *app) error {
	if f.addr == "" {
		return nil
	}
	a.metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{
		ErrorLog: log.New(slogWriter{a.log}, "metrics: ", 0), Registry: a.metrics,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		answer(w, a.inForce.Load().greylist.Health(ctx))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		answer(w, a.readiness())
	})
	return a.addHTTPService(ctx, "metrics", "--metrics-listen", f.addr, "/metrics", mux)
}

// inForceDNSLists are the DNS lists of the pipeline in force.
func (a *app) inForceDNSLists() []*dnsbl.List {
	if p := a.inForce.Load(); p != nil {
		return p.dnsLists
	}
	return nil
}

// dnsCollectors read the resolver's own counters at scrape time.
func dnsCollectors(r *resolver.Resolver) []prometheus.Collector {
	stat := func(f func(resolver.Stats) int64) func() float64 {
		return func() float64 { return float64(f(r.Stats())) }
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "greymilter_dns_lookups_total", Help: "DNS lookups asked of the resolver."},
			stat(func(s resolver.Stats) int64 { return s.Lookups })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "greymilter_dns_cache_hits_total", Help: "DNS lookups answered from the cache."},
			stat(func(s resolver.Stats) int64 { return s.CacheHits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "greymilter_dns_queries_total", Help: "DNS queries sent to the upstream servers, retries included."},
			stat(func(s resolver.Stats) int64 { return s.Queries })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "greymilter_dns_cache_entries", Help: "DNS answers in the cache, and failures remembered for a moment."},
			stat(func(s resolver.Stats) int64 { return int64(s.Cached) })),
		upstreamCollector{r: r, up: prometheus.NewDesc("greymilter_dns_upstream_up",
			"1 while a DNS server is asked, 0 while its circuit breaker has it marked down.", []string{"server"}, nil)},
	}
}

// upstreamCollector reads the state of the resolver's servers at scrape
// time.
type upstreamCollector struct {
	r  *resolver.Resolver
	up *prometheus.Desc
}

func (c upstreamCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.up }

func (c upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.r.Upstreams() {
		up := 0.0
		if u.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, u.Addr)
	}
}

// dnsListCollector reads the DNS lists' own per-zone counters at scrape
// time: refusals, self-test failures, suspension.
type dnsListCollector struct {
	lists                                 func() []*dnsbl.List
	refusals, selfTestFailures, suspended *prometheus.Desc
}

// newDNSListCollector reports on the lists that lists returns at each
// scrape: those of the pipeline in force.
func newDNSListCollector(lists func() []*dnsbl.List) *dnsListCollector {
	labels := []string{"list", "zone"}
	return &dnsListCollector{
		lists: lists,
		refusals: prometheus.NewDesc("greymilter_dnslist_refusals_total",
			"Answers of a DNS list that refused the query (127.0.0.255, 127.255.255.252-255, 127.0.0.1); the list abstained.", labels, nil),
		selfTestFailures: prometheus.NewDesc("greymilter_dnslist_selftest_failures_total", "RFC 5782 self-tests a DNS list failed.", labels, nil),
		suspended:        prometheus.NewDesc("greymilter_dnslist_suspended", "1 while an allow list is suspended for failing its self-test.", labels, nil),
	}
}

func (c *dnsListCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.refusals
	ch <- c.selfTestFailures
	ch <- c.suspended
}

func (c *dnsListCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.lists() {
		for _, st := range l.Stats() {
			suspended := 0.0
			if st.Suspended {
				suspended = 1
			}
			ch <- prometheus.MustNewConstMetric(c.refusals, prometheus.CounterValue, float64(st.Refusals), l.Kind(), st.Zone)
			ch <- prometheus.MustNewConstMetric(c.selfTestFailures, prometheus.CounterValue, float64(st.SelfTestFailures), l.Kind(), st.Zone)
			ch <- prometheus.MustNewConstMetric(c.suspended, prometheus.GaugeValue, suspended, l.Kind(), st.Zone)
		}
	}
}

// healthTimeout bounds the store's answer to /healthz.
const healthTimeout = 2 * time.Second

// answer writes "ok" for a nil err, else 503 and the error.
func answer(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// readiness tells whether greymilter decides at full speed: every service
// listens (so the lists and the configuration were loaded) and the store
// is ready (SQLite: its in-memory index is filled).
func (a *app) readiness() error {
	if !a.serving.Load() {
		return errors.New("not serving yet")
	}
	if p := a.inForce.Load(); p == nil || !p.greylist.Ready() {
		return errors.New("store not ready: the in-memory index is still filling")
	}
	return nil
}
