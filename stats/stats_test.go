package stats

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"strings"
	"sync"
	"testing"
	"time"
)

type memSink struct {
	mu     sync.Mutex
	counts []Count
	fail   bool
}

func (m *memSink) AddCounts(_ context.Context, c []Count) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.counts = append(m.counts, c...)
	return nil
}

var day0 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func TestRecorderSumsByHourAndKeepsCountsOnFailure(t *testing.T) {
	sink := &memSink{fail: true}
	r := NewRecorder(sink, nil)
	r.Add(day0.Add(10*time.Minute), ActionGreylist, "new")
	r.Add(day0.Add(50*time.Minute), ActionGreylist, "new")
	r.Add(day0.Add(70*time.Minute), ActionGreylist, "new")
	r.Add(day0.Add(70*time.Minute), ActionPass, "known")
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("flush to a failing sink succeeded")
	}
	sink.fail = false
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, c := range sink.counts {
		got[c.Hour.Format("15")+" "+c.Action+"/"+c.Reason] += c.N
	}
	want := map[string]int64{"00 greylist/new": 2, "01 greylist/new": 1, "01 pass/known": 1}
	if len(got) != len(want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s = %d, want %d", k, got[k], n)
		}
	}
}

func sampleCounts() []Count {
	return []Count{
		{Hour: day0.Add(1 * time.Hour), Action: ActionGreylist, Reason: "new", N: 40},
		{Hour: day0.Add(2 * time.Hour), Action: ActionPass, Reason: "passed", N: 10},
		{Hour: day0.Add(2 * time.Hour), Action: ActionPass, Reason: "known", N: 30},
		{Hour: day0.Add(26 * time.Hour), Action: ActionReject, Reason: "dnsbl", N: 5},
		{Hour: day0.Add(26 * time.Hour), Action: ActionPass, Reason: "known", N: 15},
		{Hour: day0.Add(-time.Hour), Action: ActionPass, Reason: "known", N: 1000}, // before the report
	}
}

func TestBuildAndText(t *testing.T) {
	r := Build(sampleCounts(), day0, day0.Add(3*24*time.Hour), 24*time.Hour)
	if len(r.Periods) != 3 {
		t.Fatalf("%d periods, want 3", len(r.Periods))
	}
	p := r.Periods[0]
	if p.Pass != 40 || p.Greylist != 40 || p.Delayed != 10 || p.Total() != 80 {
		t.Errorf("day 1: %+v", p)
	}
	if r.Periods[1].Reject != 5 || r.Periods[2].Total() != 0 {
		t.Errorf("days 2, 3: %+v %+v", r.Periods[1], r.Periods[2])
	}
	var out bytes.Buffer
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"2026-11-20", "2026-11-22", "all", "50.0%", "dnsbl", "pass      known"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

func TestPNG(t *testing.T) {
	r := Build(sampleCounts(), day0, day0.Add(3*24*time.Hour), 24*time.Hour)
	var out bytes.Buffer
	if err := r.WritePNG(&out, 640, 320); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&out)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 320 {
		t.Errorf("image %v", b)
	}
	// The first day's bar is half greylisted: both colours are drawn.
	seen := map[[3]uint32]bool{}
	for y := 0; y < 320; y++ {
		for x := 60; x < 240; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	for name, c := range map[string][3]uint32{"pass": {76, 153, 76}, "greylist": {230, 159, 0}} {
		if !seen[c] {
			t.Errorf("no %s colour in the first bar", name)
		}
	}
	if err := r.WritePNG(&out, 10, 10); err == nil {
		t.Error("a 10x10 graph was drawn")
	}
}

func TestNiceCeiling(t *testing.T) {
	for n, want := range map[int64]int64{0: 5, 3: 5, 7: 10, 11: 15, 180: 200, 201: 250, 2400: 2500, 5000: 5000, 5001: 6000} {
		if got := niceCeiling(n); got != want {
			t.Errorf("niceCeiling(%d) = %d, want %d", n, got, want)
		}
	}
}
