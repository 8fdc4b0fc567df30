package stats

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"image/color"
	"image/png"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
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

// sampleRetries are 10 triplets that passed (6 after 5 to 6 minutes, 3
// within 10, 1 after 3 hours) and a cohort of 4 greylisted, 3 never
// retried.
func sampleRetries() Retries {
	r := greylist.NewRetries(greylist.DelayBounds, day0, day0.Add(24*time.Hour))
	r.Greylisted, r.NeverRetried = 4, 3
	for range 6 {
		r.Add(5*time.Minute + 30*time.Second)
	}
	for range 3 {
		r.Add(9 * time.Minute)
	}
	r.Add(3 * time.Hour)
	return r
}

func TestRetriesText(t *testing.T) {
	r := sampleRetries()
	if r.PassedTotal() != 10 || r.Passed[1] != 6 || r.Passed[3] != 3 || r.Passed[8] != 1 {
		t.Fatalf("classes %v", r.Passed)
	}
	var out bytes.Buffer
	if err := WriteRetries(&out, r); err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) == 5 && (f[0] == "≤" || f[0] == ">") {
			rows[f[0]+" "+f[1]] = strings.Join(f[2:], " ")
		}
	}
	for class, want := range map[string]string{"≤ 5m": "0 0.0% 0.0%", "≤ 6m": "6 60.0% 60.0%", "≤ 10m": "3 30.0% 90.0%", "≤ 4h": "1 10.0% 100.0%", "> 48h": "0 0.0% 100.0%"} {
		if rows[class] != want {
			t.Errorf("class %s: %q, want %q\n%s", class, rows[class], want, out.String())
		}
	}
	for _, want := range []string{"of the 10 triplets that passed", "never retried: 75.0% (3 of the 4 triplets greylisted from 2026-11-20 00:00 to 2026-11-21 00:00 UTC)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, out.String())
		}
	}
}

func TestGraphPNGAndSVG(t *testing.T) {
	hourly := Build(sampleCounts(), day0, day0.Add(3*24*time.Hour), time.Hour)
	var out bytes.Buffer
	if err := WriteGraph(&out, PNG, 900, 600, hourly, sampleRetries()); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&out)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 900 || b.Dy() != 600 {
		t.Errorf("image %v, want 900x600", b)
	}
	// Each action's line and the delay bars are drawn in their colours.
	seen := map[[3]uint32]bool{}
	for y := range 600 {
		for x := range 900 {
			r, g, b, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	for name, c := range map[string]color.RGBA{"pass": colorPass, "greylist": colorGreylist, "reject": colorReject, "delays": colorDelay} {
		if !seen[[3]uint32{uint32(c.R), uint32(c.G), uint32(c.B)}] {
			t.Errorf("no %s colour in the graph", name)
		}
	}

	out.Reset()
	if err := WriteGraph(&out, SVG, 900, 600, hourly, sampleRetries()); err != nil {
		t.Fatal(err)
	}
	svg := out.String()
	var root struct {
		XMLName xml.Name
		Width   string `xml:"width,attr"`
		Height  string `xml:"height,attr"`
	}
	if err := xml.Unmarshal(out.Bytes(), &root); err != nil || root.XMLName.Local != "svg" {
		t.Fatalf("not SVG (%v): %.200s", err, svg)
	}
	// 900x600 pixels at 96 DPI.
	if root.Width != "675pt" || root.Height != "450pt" {
		t.Errorf("SVG of %s x %s, want 675pt x 450pt", root.Width, root.Height)
	}
	for _, want := range []string{
		"Recipients judged per hour, 2026-11-20 00:00 to 2026-11-23 00:00 UTC", ">passed<", ">greylisted<", ">rejected<",
		"Nov 20", "Nov 21", // the dated time axis
		"Real retry delay of the 10 triplets that passed", "≤ 6m", "&gt; 48h",
		"Never retried: 75.0% (3 of 4)", ">never retried<", ">came back<",
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if err := WriteGraph(&out, PNG, 100, 100, hourly, sampleRetries()); err == nil {
		t.Error("a 100x100 graph was drawn")
	}
	if err := WriteGraph(&out, "gif", 900, 600, hourly, sampleRetries()); err == nil {
		t.Error("a GIF was drawn")
	}
}
