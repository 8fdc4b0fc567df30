package engine

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Metrics counts decisions by action and reason.
type Metrics struct {
	byKey sync.Map // "action/reason" -> *atomic.Int64
}

func newMetrics() *Metrics { return &Metrics{} }

func (m *Metrics) count(v Verdict) {
	key := v.Action.String() + "/" + v.Reason
	c, ok := m.byKey.Load(key)
	if !ok {
		c, _ = m.byKey.LoadOrStore(key, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
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
