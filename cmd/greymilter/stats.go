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
	pngPath := fs.String("png", "", "also draw graphs into this PNG file: recipients per hour by action, real retry delays, share never retried")
	svgPath := fs.String("svg", "", "the same graphs as SVG into this file")
	width := fs.Int("width", 1200, "graph width in pixels")
	height := fs.Int("height", 800, "graph height in pixels")
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
		fmt.Fprintf(stderr, "greymilter stats: --db %s: this store keeps no decision counts or retry figures\n", *db)
		return 1
	}
	if err := writeStats(context.Background(), store, stdout, statsOptions{
		days: *days, hourly: *hourly, pngPath: *pngPath, svgPath: *svgPath, width: *width, height: *height, autoWhitelist: *autoWhitelist, now: time.Now(),
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
	svgPath       string
	width, height int
	autoWhitelist int
	now           time.Time
}

// statsStore is what `greymilter stats` reads.
type statsStore interface {
	greylist.Counter
	greylist.Summarizer
	greylist.RetryReporter
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
	now := o.now.UTC()
	retries, err := store.Retries(ctx, from, now.Add(-cohortFrom), now.Add(-cohortTo), greylist.DelayBounds)
	if err != nil {
		return err
	}
	if err := stats.WriteRetries(w, retries); err != nil {
		return err
	}
	for _, g := range []struct {
		path   string
		format stats.Format
	}{{o.pngPath, stats.PNG}, {o.svgPath, stats.SVG}} {
		if g.path == "" {
			continue
		}
		// Hour by hour up to the current one: the hours to come would
		// draw as a fall to zero.
		hourly := stats.Build(counts, from, now.Truncate(time.Hour).Add(time.Hour), time.Hour)
		if err := writeGraph(g.path, g.format, o.width, o.height, hourly, retries); err != nil {
			return err
		}
	}
	return nil
}

// The never-retried share is that of the triplets first greylisted between
// cohortFrom and cohortTo ago: real senders have come back by then, and
// greymilter still holds those that did not (it purges them after
// --purge-unverified, 48 hours by default).
const (
	cohortFrom = 36 * time.Hour
	cohortTo   = 12 * time.Hour
)

func writeGraph(path string, format stats.Format, width, height int, hourly stats.Report, retries stats.Retries) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := stats.WriteGraph(f, format, width, height, hourly, retries); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
