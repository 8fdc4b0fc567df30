package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/stats"
)

func TestStatsCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "g.db")
	store, err := sqlitestore.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	rec := stats.NewRecorder(store, nil)
	for range 30 {
		rec.Add(now, "greylist", "new")
	}
	for range 10 {
		rec.Add(now.Add(-24*time.Hour), "pass", "passed")
	}
	rec.Add(now.Add(-30*24*time.Hour), "reject", "dnsbl") // outside --days 7
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Triplets with known histories: passed after 6 minutes (first seen
	// 24h ago) and after 40 minutes (2h ago); greylisted 20h and 30h ago
	// and never retried; retried too early 25h ago; new now.
	attempts := map[string][]time.Duration{
		"passed-6m":  {-24 * time.Hour, -24*time.Hour + 6*time.Minute},
		"passed-40m": {-2 * time.Hour, -2*time.Hour + 40*time.Minute},
		"never-20h":  {-20 * time.Hour},
		"never-30h":  {-30 * time.Hour},
		"early-25h":  {-25 * time.Hour, -25*time.Hour + time.Minute},
		"new":        {0},
	}
	for name, ats := range attempts {
		k := greylist.Key{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: name + "@example.net"}
		for _, at := range ats {
			if _, err := store.Attempt(context.Background(), k, greylist.DefaultRules, now.Add(at)); err != nil {
				t.Fatal(err)
			}
		}
	}
	store.Close()

	var stdout, stderr bytes.Buffer
	pngPath, svgPath := filepath.Join(dir, "stats.png"), filepath.Join(dir, "stats.svg")
	if code := runStats([]string{"--db", db, "--png", pngPath, "--svg", svgPath, "--width", "1000", "--height", "700"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{now.Format("2006-01-02"), "greylist  new", "pass      passed", "75.0%", "store: 6 triplets (2 passed, 4 waiting",
		"real retry delay of the 2 triplets that passed", "never retried: 50.0% (2 of the 4 triplets greylisted from "} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dnsbl") {
		t.Errorf("a count older than --days shows:\n%s", out)
	}
	for _, class := range []string{"≤ 6m", "≤ 1h"} {
		if !regexp.MustCompile(`(?m)^\s*` + class + `\s+1\s+50\.0%`).MatchString(out) {
			t.Errorf("no triplet in delay class %s:\n%s", class, out)
		}
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil {
		t.Errorf("graph: %v", err)
	} else if b := img.Bounds(); b.Dx() != 1000 || b.Dy() != 700 {
		t.Errorf("graph of %v, want 1000x700", b)
	}
	svg, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg width=\"750pt\" height=\"525pt\"", "Real retry delay of the 2 triplets that passed", "Never retried: 50.0% (2 of 4)", ">greylisted<"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}

	if code := runStats([]string{"--db", filepath.Join(dir, "missing.db")}, &stdout, &stderr); code != exitUsage {
		t.Errorf("missing database: exit %d, want %d", code, exitUsage)
	}
}
