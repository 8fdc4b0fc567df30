// Package stats keeps greymilter's decision log as hourly counters (how
// many recipients were passed, greylisted or rejected, and why) and turns
// it into the report and graphs of `greymilter stats`, as bley's bleygraph
// does, without a row per decision on the hot path.
package stats

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// Count is how many decisions of one action and reason fell in one hour;
// stores keep them (greylist.Counter).
type Count = greylist.Count

// Sink stores counts, adding to what is there.
type Sink interface {
	AddCounts(ctx context.Context, counts []Count) error
}

type bucket struct {
	hour           int64 // unix hour
	action, reason string
}

// Recorder adds up decisions in memory and flushes them to a Sink.
type Recorder struct {
	sink Sink
	log  *slog.Logger

	mu     sync.Mutex
	counts map[bucket]int64
}

// NewRecorder returns a Recorder writing to sink.
func NewRecorder(sink Sink, log *slog.Logger) *Recorder {
	return &Recorder{sink: sink, log: log, counts: make(map[bucket]int64)}
}

// Add counts one decision.
func (r *Recorder) Add(at time.Time, action, reason string) {
	b := bucket{hour: at.Unix() / 3600, action: action, reason: reason}
	r.mu.Lock()
	r.counts[b]++
	r.mu.Unlock()
}

// Flush writes what was counted since the last flush. On failure the
// counts are kept for the next flush.
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	pending := r.counts
	r.counts = make(map[bucket]int64)
	r.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	out := make([]Count, 0, len(pending))
	for b, n := range pending {
		out = append(out, Count{Hour: time.Unix(b.hour*3600, 0).UTC(), Action: b.action, Reason: b.reason, N: n})
	}
	if err := r.sink.AddCounts(ctx, out); err != nil {
		r.mu.Lock()
		for b, n := range pending {
			r.counts[b] += n
		}
		r.mu.Unlock()
		return err
	}
	return nil
}

// Run flushes every interval until ctx ends, then once more.
func (r *Recorder) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := r.Flush(context.Background()); err != nil && r.log != nil {
				r.log.Error("writing decision counts", "err", err)
			}
			return
		case <-t.C:
			if err := r.Flush(ctx); err != nil && r.log != nil {
				r.log.Error("writing decision counts", "err", err)
			}
		}
	}
}
