package engine

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics counts decisions by action and reason and keeps a histogram of
// how long decisions take.
type Metrics struct {
	// counts grows by one entry per action and reason ever seen, so
	// decisions nearly always only read it: a map under a read lock,
	// keyed by a struct, costs no allocation per decision.
	mu     sync.RWMutex
	counts map[countKey]*atomic.Int64

	latencyCounts [len(latencyBuckets) + 1]atomic.Int64
	latencySumNS  atomic.Int64
}

// latencyBuckets are the histogram's upper bounds.
var latencyBuckets = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

func newMetrics() *Metrics { return &Metrics{counts: make(map[countKey]*atomic.Int64)} }

type countKey struct {
	action Action
	reason string
}

func (m *Metrics) count(v Verdict, took time.Duration) {
	key := countKey{v.Action, v.Reason}
	m.mu.RLock()
	c := m.counts[key]
	m.mu.RUnlock()
	if c == nil {
		m.mu.Lock()
		if c = m.counts[key]; c == nil {
			c = new(atomic.Int64)
			m.counts[key] = c
		}
		m.mu.Unlock()
	}
	c.Add(1)
	i := sort.Search(len(latencyBuckets), func(i int) bool { return took <= latencyBuckets[i] })
	m.latencyCounts[i].Add(1)
	m.latencySumNS.Add(int64(took))
}

// Count is one counter of Snapshot.
type Count struct {
	Action, Reason string
	N              int64
}

// Snapshot returns the counters, sorted by action then reason.
func (m *Metrics) Snapshot() []Count {
	var out []Count
	m.mu.RLock()
	for k, n := range m.counts {
		out = append(out, Count{Action: k.action.String(), Reason: k.reason, N: n.Load()})
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Action != out[j].Action {
			return out[i].Action < out[j].Action
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}

// WritePrometheus writes the metrics in Prometheus' text format.
func (m *Metrics) WritePrometheus(w io.Writer) error {
	var err error
	p := func(format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, args...)
		}
	}
	p("# HELP greymilter_decisions_total Decisions by action and reason.\n# TYPE greymilter_decisions_total counter\n")
	for _, c := range m.Snapshot() {
		p("greymilter_decisions_total{action=%q,reason=%q} %d\n", c.Action, c.Reason, c.N)
	}
	p("# HELP greymilter_decision_seconds Time taken by one decision.\n# TYPE greymilter_decision_seconds histogram\n")
	var cum int64
	for i, b := range latencyBuckets {
		cum += m.latencyCounts[i].Load()
		p("greymilter_decision_seconds_bucket{le=\"%g\"} %d\n", b.Seconds(), cum)
	}
	cum += m.latencyCounts[len(latencyBuckets)].Load()
	p("greymilter_decision_seconds_bucket{le=\"+Inf\"} %d\n", cum)
	p("greymilter_decision_seconds_sum %g\n", time.Duration(m.latencySumNS.Load()).Seconds())
	p("greymilter_decision_seconds_count %d\n", cum)
	return err
}
