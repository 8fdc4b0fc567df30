package main

import (
	"testing"
	"time"
)

func TestHistogramQuantile(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{3 * time.Millisecond}, 0.99, 3 * time.Millisecond},
		{"exact below 128ns", []time.Duration{10, 20, 30, 40}, 0.5, 20},
		{"median of 1..100ms", spread(100, time.Millisecond), 0.5, 50 * time.Millisecond},
		{"p99 of 1..100ms", spread(100, time.Millisecond), 0.99, 99 * time.Millisecond},
		{"p90 of 1..1000us", spread(1000, time.Microsecond), 0.9, 900 * time.Microsecond},
		{"max clamps", []time.Duration{time.Second}, 1, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, s := range tt.samples {
				h.Record(s)
			}
			got := h.Quantile(tt.q)
			// Buckets are under 1% wide.
			if diff := got - tt.want; diff > tt.want/100 || -diff > tt.want/100 {
				t.Errorf("Quantile(%v) = %v, want %v within 1%%", tt.q, got, tt.want)
			}
		})
	}
}

func spread(n int, unit time.Duration) []time.Duration {
	var s []time.Duration
	for i := 1; i <= n; i++ {
		s = append(s, time.Duration(i)*unit)
	}
	return s
}

func TestHistogramMerge(t *testing.T) {
	var a, b Histogram
	for i := 1; i <= 50; i++ {
		a.Record(time.Duration(i) * time.Millisecond)
		b.Record(time.Duration(50+i) * time.Millisecond)
	}
	a.Merge(&b)
	if a.Count() != 100 || a.Max() != 100*time.Millisecond {
		t.Fatalf("merged: count %d max %v, want 100 and 100ms", a.Count(), a.Max())
	}
	if got := a.Quantile(0.75); got < 74*time.Millisecond || got > 76*time.Millisecond {
		t.Errorf("p75 = %v, want about 75ms", got)
	}
}

func TestBucketsCoverEveryValue(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1<<64 - 1} {
		i := bucketOf(v)
		if i < 0 || i >= len(Histogram{}.counts) {
			t.Fatalf("bucketOf(%d) = %d: out of range", v, i)
		}
		mid := bucketValue(i)
		if v >= subCount && (float64(mid) < float64(v)*0.99 || float64(mid) > float64(v)*1.01) {
			t.Errorf("bucket of %d has middle %d: more than 1%% off", v, mid)
		}
		if v < subCount && mid != v {
			t.Errorf("bucket of %d has middle %d, want exact", v, mid)
		}
	}
}
