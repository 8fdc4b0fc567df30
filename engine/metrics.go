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
	byKey sync.Map // "action/reason" -> *atomic.Int64

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

func newMetrics() *Metrics { return &Metrics{} }

func (m *Metrics) count(v Verdict, took time.Duration) {
	key := v.Action.String() + "/" + v.Reason
	c, ok := m.byKey.Load(key)
	if !ok {
		c, _ = m.byKey.LoadOrStore(key, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
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
	m.byKey.Range(func(k, v any) bool {
		key := k.(string)
		for i := 0; i < len(key); i++ {
			if key[i] == '/' {
				out = append(out, Count{Action: key[:i], Reason: key[i+1:], N: v.(*atomic.Int64).Load()})
				break
			}
		}
		return true
	})
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
