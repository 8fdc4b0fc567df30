package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"time"
)

// Histogram records latencies in log-linear buckets: exact below 128 ns,
// then 128 buckets per power of two (under 1% error), so that millions of
// samples take a fixed 60 KB and merge by addition.
type Histogram struct {
	counts [(64-subBits)*subCount + subCount]uint64
	n      uint64
	max    time.Duration
}

const (
	subBits  = 7
	subCount = 1 << subBits
)

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return shift*subCount + int(v>>shift)
}

// bucketValue is the middle of a bucket.
func bucketValue(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	top := uint64(i%subCount + subCount)
	return top<<shift + (uint64(1)<<shift)/2
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count returns how many latencies were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest latency recorded.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the latency that a share q (0 to 1) of the samples do
// not exceed.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketValue(i)), h.max)
		}
	}
	return h.max
}

// Result is what one greyload run measured.
type Result struct {
	Proto       string  `json:"proto"`
	Target      string  `json:"target"`
	Expect      string  `json:"expect"`
	Concurrency int     `json:"concurrency"`
	Seed        uint64  `json:"seed"`
	NewShare    float64 `json:"new_share"`

	Decisions    int     `json:"decisions"` // measured phase
	Seconds      float64 `json:"seconds"`
	PerSecond    float64 `json:"decisions_per_s"`
	P50          float64 `json:"p50_ms"`
	P90          float64 `json:"p90_ms"`
	P99          float64 `json:"p99_ms"`
	P999         float64 `json:"p999_ms"`
	Max          float64 `json:"max_ms"`
	New          int     `json:"new"`     // first-time decisions, measured phase
	Retries      int     `json:"retries"` // retry decisions, measured phase
	Fallbacks    int     `json:"fallbacks"`
	Transactions int     `json:"transactions"`
	Warmup       int     `json:"warmup_decisions"`
	WarmupSecs   float64 `json:"warmup_seconds"`
	Errors       int     `json:"errors"`     // whole run
	Mismatches   int     `json:"mismatches"` // whole run
	Stopped      string  `json:"stopped"`    // count, time or errors
	// CPU is the processor time greyload itself used over the whole run,
	// in seconds: what it took from the machine it shares with the server.
	CPU float64 `json:"cpu_s"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// setLatency fills the latency fields from h.
func (r *Result) setLatency(h *Histogram) {
	r.P50, r.P90, r.P99, r.P999 = ms(h.Quantile(0.50)), ms(h.Quantile(0.90)), ms(h.Quantile(0.99)), ms(h.Quantile(0.999))
	r.Max = ms(h.Max())
}

// WriteJSON writes the result as one JSON line.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes the result for a person to read.
func (r *Result) WriteTable(w io.Writer) error {
	_, err := fmt.Fprintf(w, `greyload: %s %s, concurrency %d, seed %d, %.0f%% new, expect %s
  decisions/s   %.1f
  decisions     %d in %.3fs (new %d, retries %d, retry slots without a due retry %d; %d transactions)
  warm-up       %d decisions in %.3fs
  latency ms    p50 %.3f   p90 %.3f   p99 %.3f   p99.9 %.3f   max %.3f
  errors        %d
  mismatches    %d
  stopped by    %s
  greyload CPU  %.2fs
`, r.Proto, r.Target, r.Concurrency, r.Seed, r.NewShare*100, r.Expect,
		r.PerSecond,
		r.Decisions, r.Seconds, r.New, r.Retries, r.Fallbacks, r.Transactions,
		r.Warmup, r.WarmupSecs,
		r.P50, r.P90, r.P99, r.P999, r.Max,
		r.Errors, r.Mismatches, r.Stopped, r.CPU)
	return err
}
