package greylist

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are what greylisting tells operators: how long store operations
// take, how long real senders took to come back, and how many greylisted
// triplets never came back at all. Give them to Greylist.Metrics and
// register them (they are a prometheus.Collector).
type Metrics struct {
	storeSeconds *prometheus.HistogramVec
	// Observers bound to their label once: observing allocates nothing.
	attempt, lookup, client, purge prometheus.Observer

	delay        prometheus.Histogram
	greylisted   prometheus.Counter
	passed       prometheus.Counter
	unverified   prometheus.Counter
	neverRetried prometheus.Counter
}

// storeBuckets are the store latency histogram's bounds, in seconds: an
// indexed lookup takes a microsecond, a group commit milliseconds.
var storeBuckets = []float64{0.00001, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5}

// delayBuckets bound the real retry delays in seconds, as stats reports them.
func delayBuckets() []float64 {
	out := make([]float64, len(DelayBounds))
	for i, d := range DelayBounds {
		out[i] = d.Seconds()
	}
	return out
}

// NewMetrics returns greylisting's metrics, all at zero.
func NewMetrics() *Metrics {
	m := &Metrics{
		storeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "greymilter_store_operation_seconds",
			Help:    "Time taken by store operations: attempt (a write, committed), lookup and client (reads), purge (a whole purge run).",
			Buckets: storeBuckets,
		}, []string{"op"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "greymilter_greylist_delay_seconds",
			Help:    "Real delay of triplets that passed greylisting: from their first deferred attempt to the retry that passed.",
			Buckets: delayBuckets(),
		}),
		greylisted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "greymilter_greylist_triplets_greylisted_total",
			Help: "Triplets greylisted: first attempts of new triplets, and of triplets started again after the retry window.",
		}),
		passed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "greymilter_greylist_triplets_passed_total",
			Help: "Triplets that passed greylisting: retried after their delay, within the retry window.",
		}),
		unverified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "greymilter_greylist_unverified_purged_total",
			Help: "Greylisted triplets purged because they never passed within --purge-unverified.",
		}),
		neverRetried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "greymilter_greylist_never_retried_purged_total",
			Help: "Greylisted triplets purged unverified that were never retried at all: the mail greylisting stopped. " +
				"Share of greylisted triplets never retried = increase(greymilter_greylist_never_retried_purged_total[w]) / " +
				"increase(greymilter_greylist_triplets_greylisted_total[w]), over a window w much longer than --purge-unverified " +
				"(a triplet is purged that long after it was greylisted).",
		}),
	}
	m.attempt = m.storeSeconds.WithLabelValues("attempt")
	m.lookup = m.storeSeconds.WithLabelValues("lookup")
	m.client = m.storeSeconds.WithLabelValues("client")
	m.purge = m.storeSeconds.WithLabelValues("purge")
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.storeSeconds.Collect(ch)
	for _, c := range []prometheus.Collector{m.delay, m.greylisted, m.passed, m.unverified, m.neverRetried} {
		c.Collect(ch)
	}
}

func (m *Metrics) attempted(res Result) {
	switch res.Outcome {
	case New:
		m.greylisted.Inc()
	case Passed:
		m.passed.Inc()
		m.delay.Observe(res.Delayed.Seconds())
	}
}

func (m *Metrics) purged(st PurgeStats) {
	m.unverified.Add(float64(st.Unverified))
	m.neverRetried.Add(float64(st.NeverRetried))
}

// SummaryCollector serves a store's Summary as gauges. Counting a large
// store takes a while, so the summary is read at most once per every and
// scrapes in between see the last one.
type SummaryCollector struct {
	read  func(ctx context.Context) (Summary, error)
	every time.Duration
	log   *slog.Logger

	mu   sync.Mutex
	last Summary
	at   time.Time

	triplets, passed, clients, autoWhitelisted *prometheus.Desc
}

// NewSummaryCollector returns a collector of read's summaries, read at most
// once per every; failures are logged and the last summary stays.
func NewSummaryCollector(read func(ctx context.Context) (Summary, error), every time.Duration, log *slog.Logger) *SummaryCollector {
	return &SummaryCollector{
		read: read, every: every, log: log,
		triplets:        prometheus.NewDesc("greymilter_store_triplets", "Triplets in the store, passed or still greylisted.", nil, nil),
		passed:          prometheus.NewDesc("greymilter_store_triplets_passed", "Triplets in the store that passed greylisting.", nil, nil),
		clients:         prometheus.NewDesc("greymilter_store_clients", "Clients (subnets or SPF identities) with passes counted in the store.", nil, nil),
		autoWhitelisted: prometheus.NewDesc("greymilter_store_auto_whitelisted_clients", "Clients in the store with enough passes to be auto-whitelisted.", nil, nil),
	}
}

// summaryTimeout bounds one reading of the summary.
const summaryTimeout = 10 * time.Second

// Describe implements prometheus.Collector.
func (c *SummaryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.triplets
	ch <- c.passed
	ch <- c.clients
	ch <- c.autoWhitelisted
}

// Collect implements prometheus.Collector.
func (c *SummaryCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.at.IsZero() || time.Since(c.at) >= c.every {
		ctx, cancel := context.WithTimeout(context.Background(), summaryTimeout)
		sum, err := c.read(ctx)
		cancel()
		if err != nil {
			c.log.Warn("store summary for metrics", "err", err)
		} else {
			c.last = sum
		}
		c.at = time.Now()
	}
	sum := c.last
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.triplets, prometheus.GaugeValue, float64(sum.Triplets))
	ch <- prometheus.MustNewConstMetric(c.passed, prometheus.GaugeValue, float64(sum.Passed))
	ch <- prometheus.MustNewConstMetric(c.clients, prometheus.GaugeValue, float64(sum.Clients))
	ch <- prometheus.MustNewConstMetric(c.autoWhitelisted, prometheus.GaugeValue, float64(sum.AutoWhitelisted))
}

// HealthCollectors read a database server store's state at scrape time.
func HealthCollectors(h Health) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "greymilter_db_up", Help: "Whether the last store operation reached the database server."},
			func() float64 {
				if h.Available() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "greymilter_db_failures_total", Help: "Store operations failed because the database server was unreachable or did not answer in time."},
			func() float64 { return float64(h.Failures()) }),
	}
}
