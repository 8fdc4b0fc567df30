package dnsbl

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/greymilter/greymilter/resolver"
)

// Metrics count, per DNS list zone, what checks asked and got. One Metrics
// serves every List (give it to List.Instrument) and is a
// prometheus.Collector.
type Metrics struct {
	queries     *prometheus.CounterVec
	hits        *prometheus.CounterVec
	abstentions *prometheus.CounterVec
	latency     *prometheus.HistogramVec
}

// NewMetrics returns the DNS lists' metrics, all at zero.
func NewMetrics() *Metrics {
	labels := []string{"list", "zone"}
	return &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "greymilter_dnslist_queries_total",
			Help: "Lookups of a client in a DNS list that finished, answered from the cache or by the servers; lookups cut short because the outcome was certain are not counted.",
		}, labels),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "greymilter_dnslist_hits_total",
			Help: "Lookups in which the DNS list listed the client (with an answer its filter counts).",
		}, labels),
		abstentions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "greymilter_dnslist_abstentions_total",
			Help: "Lookups without a usable answer, by reason: timeout, refused (the list answered a refusal code, 127.255.255.x), error (server failure, network).",
		}, []string{"list", "zone", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "greymilter_dnslist_query_seconds",
			Help:    "Time to get a DNS list's answer from the servers (cached answers are not timed).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, labels),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.queries.Collect(ch)
	m.hits.Collect(ch)
	m.abstentions.Collect(ch)
	m.latency.Collect(ch)
}

// zoneMetrics are one zone's metrics, bound to its labels once so that
// counting allocates nothing.
type zoneMetrics struct {
	queries, hits              prometheus.Counter
	timeout, refused, failures prometheus.Counter
	latency                    prometheus.Observer
}

// Instrument makes l count its lookups in m, labelled with its kind
// ("dnsbl", "dnswl") and zone. Call it before l is used.
func (l *List) Instrument(m *Metrics) {
	kind := l.Kind()
	l.metrics = make([]zoneMetrics, len(l.zones))
	for i, z := range l.zones {
		l.metrics[i] = zoneMetrics{
			queries:  m.queries.WithLabelValues(kind, z.Name),
			hits:     m.hits.WithLabelValues(kind, z.Name),
			timeout:  m.abstentions.WithLabelValues(kind, z.Name, "timeout"),
			refused:  m.abstentions.WithLabelValues(kind, z.Name, "refused"),
			failures: m.abstentions.WithLabelValues(kind, z.Name, "error"),
			latency:  m.latency.WithLabelValues(kind, z.Name),
		}
	}
}

// observe counts the outcome of one lookup of zone i; took < 0 for an
// answer from the cache. A suspended zone was not asked: nothing counts.
func (l *List) observe(o zoneOutcome) {
	if l.metrics == nil || errors.Is(o.err, ErrSuspended) {
		return
	}
	m := &l.metrics[o.i]
	m.queries.Inc()
	if o.took >= 0 {
		m.latency.Observe(o.took.Seconds())
	}
	switch {
	case o.err == nil && o.answers != nil:
		m.hits.Inc()
	case o.err == nil:
	case errors.Is(o.err, ErrRefused):
		m.refused.Inc()
	case resolver.IsTimeout(o.err):
		m.timeout.Inc()
	default:
		m.failures.Inc()
	}
}
