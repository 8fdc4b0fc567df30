package engine

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts decisions by action and reason and keeps a histogram of
// how long decisions take. It is a prometheus.Collector: register it on
// the registry that serves /metrics.
type Metrics struct {
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram

	// bound holds one counter of decisions per action and reason ever
	// seen, bound to its labels once, so that a decision only reads a map
	// under a read lock, keyed by a struct: no allocation per decision
	// (CounterVec.WithLabelValues would hash and look up the labels each
	// time).
	mu    sync.RWMutex
	bound map[countKey]prometheus.Counter
}

// latencyBuckets are the histogram's upper bounds, in seconds.
var latencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5,
}

func newMetrics() *Metrics {
	return &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "greymilter_decisions_total",
			Help: "Decisions by action and reason.",
		}, []string{"action", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "greymilter_decision_seconds",
			Help:    "Time taken by one decision.",
			Buckets: latencyBuckets,
		}),
		bound: make(map[countKey]prometheus.Counter),
	}
}

type countKey struct {
	action Action
	reason string
}

func (m *Metrics) count(v Verdict, took time.Duration) {
	key := countKey{v.Action, v.Reason}
	m.mu.RLock()
	c := m.bound[key]
	m.mu.RUnlock()
	if c == nil {
		m.mu.Lock()
		if c = m.bound[key]; c == nil {
			c = m.decisions.WithLabelValues(v.Action.String(), v.Reason)
			m.bound[key] = c
		}
		m.mu.Unlock()
	}
	c.Inc()
	m.latency.Observe(took.Seconds())
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.decisions.Describe(ch)
	m.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.decisions.Collect(ch)
	m.latency.Collect(ch)
}
