package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/stats"
)

// runStats is `greymilter stats`: the decision log summed up by day (or
// hour), what the store holds, and optionally a PNG graph.
func runStats(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("greymilter stats", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are written below, once
	// --help goes to standard output (below); a bad flag says only what
	// is wrong.
	fs.Usage = func() {}
	db := fs.String("db", "greymilter.db", "greymilter's database: SQLite file or postgres:// URL")
	days := fs.Int("days", 7, "how many days back")
	hourly := fs.Bool("hourly", false, "one row per hour instead of per day")
	pngPath := fs.String("png", "", "also draw the report as a PNG graph into this file")
	width := fs.Int("width", 800, "graph width in pixels")
	height := fs.Int("height", 400, "graph height in pixels")
	autoWhitelist := fs.Int("auto-whitelist-clients", 5, "passes that make a client auto-whitelisted, as greymilter runs with")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: greymilter stats [flags]\n\nSums up greymilter's decision log (reads the database; does not talk to the daemon).\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "greymilter stats: %v\n", err)
		return exitUsage
	}
	if *days < 1 {
		fmt.Fprintf(stderr, "greymilter stats: --days %d: want 1 or more\n", *days)
		return exitUsage
	}
	// A missing file would be created empty: say so instead.
	if !strings.Contains(*db, "://") && *db != ":memory:" {
		if _, err := os.Stat(*db); err != nil {
			fmt.Fprintf(stderr, "greymilter stats: --db: %v\n", err)
			return exitUsage
		}
	}
	opened, err := greylist.Open(context.Background(), *db, greylist.Options{Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintf(stderr, "greymilter stats: %v\n", err)
		return 1
	}
	defer opened.Close()
	store, ok := opened.(statsStore)
	if !ok {
		fmt.Fprintf(stderr, "greymilter stats: --db %s: this store keeps no decision counts\n", *db)
		return 1
	}
	if err := writeStats(context.Background(), store, stdout, statsOptions{
		days: *days, hourly: *hourly, pngPath: *pngPath, width: *width, height: *height, autoWhitelist: *autoWhitelist, now: time.Now(),
	}); err != nil {
		fmt.Fprintf(stderr, "greymilter stats: %v\n", err)
		return 1
	}
	return 0
}

type statsOptions struct {
	days          int
	hourly        bool
	pngPath       string
	width, height int
	autoWhitelist int
	now           time.Time
}

// statsStore is what `greymilter stats` reads.
type statsStore interface {
	greylist.Counter
	greylist.Summarizer
}

func writeStats(ctx context.Context, store statsStore, w io.Writer, o statsOptions) error {
	step := 24 * time.Hour
	if o.hourly {
		step = time.Hour
	}
	to := o.now.UTC().Truncate(step).Add(step)
	from := to.Add(-time.Duration(o.days) * 24 * time.Hour)
	counts, err := store.Counts(ctx, from)
	if err != nil {
		return err
	}
	report := stats.Build(counts, from, to, step)
	if err := report.WriteText(w); err != nil {
		return err
	}
	sum, err := store.Summary(ctx, o.autoWhitelist)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nstore: %d triplets (%d passed, %d waiting or never retried), %d clients (%d auto-whitelisted)\n",
		sum.Triplets, sum.Passed, sum.Triplets-sum.Passed, sum.Clients, sum.AutoWhitelisted)
	if o.pngPath == "" {
		return nil
	}
	f, err := os.Create(o.pngPath)
	if err != nil {
		return err
	}
	if err := report.WritePNG(f, o.width, o.height); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
