package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
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
	k := greylist.Key{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@example.net"}
	store.Attempt(context.Background(), k, greylist.DefaultRules, now)
	store.Close()

	var stdout, stderr bytes.Buffer
	pngPath := filepath.Join(dir, "stats.png")
	if code := runStats([]string{"--db", db, "--png", pngPath}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{now.Format("2006-01-02"), "greylist  new", "pass      passed", "75.0%", "store: 1 triplets (0 passed, 1 waiting"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dnsbl") {
		t.Errorf("a count older than --days shows:\n%s", out)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("graph: %v", err)
	}

	if code := runStats([]string{"--db", filepath.Join(dir, "missing.db")}, &stdout, &stderr); code != exitUsage {
		t.Errorf("missing database: exit %d, want %d", code, exitUsage)
	}
}
