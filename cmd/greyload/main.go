// Command greyload is a load generator for greylisting servers: it speaks
// the milter protocol as Postfix's smtpd does, or the Postfix policy
// protocol, to a server on this machine, sends a seeded stream of
// first-time triplets and retries after the greylisting delay, checks every
// answer (a first-time triplet must be deferred, a retry after the delay
// must pass) and reports decisions per second, latency percentiles, errors
// and mismatches.
//
//	greymilter -s inet:127.0.0.1:10029 --db /tmp/g.db --delay 1s --auto-whitelist-clients 0 &
//	greyload --milter inet:127.0.0.1:10029 --delay 1s -c 8 -n 20000
//
// See docs/greyload.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses: 1 when the server made errors or wrong answers, 2 for bad
// flags or a run that could not start.
const (
	exitFailed = 1
	exitUsage  = 2
)

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("greyload", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: greyload (--milter ADDR | --policy ADDR) [flags]\n\nSends a seeded stream of greylisting decisions to a milter or policy server on loopback and checks the answers.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		milterAddr, policyAddr string
		jsonOut                bool
		warmup                 string
		cfg                    = Config{Log: stderr}
	)
	fs.StringVar(&milterAddr, "milter", "", "milter server to load: inet:127.0.0.1:PORT, inet6:[::1]:PORT or unix:PATH")
	fs.StringVar(&policyAddr, "policy", "", "policy server to load (same forms)")
	fs.IntVarP(&cfg.Concurrency, "concurrency", "c", 8, "concurrent clients (smtpd processes)")
	fs.IntVarP(&cfg.Count, "count", "n", 10000, "decisions (recipients) to measure after the warm-up")
	fs.DurationVar(&cfg.MaxTime, "max-time", time.Minute, "hard cap of the whole run, warm-up included")
	fs.DurationVar(&cfg.Delay, "delay", 5*time.Minute, "the server's greylisting delay: retries come after it")
	fs.DurationVar(&cfg.Margin, "retry-margin", time.Second, "added to --delay before a retry (postgrey counts whole seconds)")
	fs.StringVar(&warmup, "warmup", "auto", "first-time triplets only for this long before measuring, so that retries are due; auto: --delay plus --retry-margin when --new-share is under 1")
	fs.Float64Var(&cfg.Shape.NewShare, "new-share", 0.5, "share of transactions with first-time triplets; the others retry earlier ones")
	fs.StringVar(&cfg.Expect, "expect", "greylist", "answers to expect: greylist (first-time deferred, retries pass) or pass (everything passes: a null server)")
	fs.Uint64Var(&cfg.Shape.Seed, "seed", 1, "seed of the workload")
	fs.IntVar(&cfg.Shape.Subnets, "subnets", 400, "client subnets (/24 in 198.18.0.0/15, /64 in 2001:2::/48)")
	fs.IntVar(&cfg.Shape.HostsPerSubnet, "hosts-per-subnet", 5, "client addresses in each subnet")
	fs.Float64Var(&cfg.Shape.IPv6Share, "ipv6-share", 0.1, "share of the subnets that are IPv6")
	fs.IntVar(&cfg.Shape.Senders, "senders", 5000, "sender addresses")
	fs.IntVar(&cfg.Shape.Recipients, "recipients", 2000, "recipient addresses")
	fs.IntVar(&cfg.Shape.MaxRcpts, "rcpts", 2, "each transaction has 1 to this many recipients")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "deadline of one request")
	fs.IntVar(&cfg.MaxErrors, "max-errors", 100, "stop after more errors than this")
	fs.BoolVar(&jsonOut, "json", false, "print the result as one JSON line instead of a table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "greyload: %v\n", err)
		return exitUsage
	}
	if err := configure(&cfg, milterAddr, policyAddr, warmup, fs.NArg()); err != nil {
		fmt.Fprintf(stderr, "greyload: %v\n", err)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, &cfg)
	if err != nil {
		fmt.Fprintf(stderr, "greyload: %v\n", err)
		return exitUsage
	}
	if jsonOut {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "greyload: %v\n", err)
		return exitFailed
	}
	if res.Errors > 0 || res.Mismatches > 0 {
		return exitFailed
	}
	return 0
}

func configure(cfg *Config, milterAddr, policyAddr, warmup string, nargs int) error {
	if nargs > 0 {
		return errors.New("unexpected arguments")
	}
	addr := milterAddr
	cfg.Proto = "milter"
	switch {
	case milterAddr != "" && policyAddr != "":
		return errors.New("give --milter or --policy, not both")
	case policyAddr != "":
		addr, cfg.Proto = policyAddr, "policy"
	case milterAddr == "":
		return errors.New("give --milter ADDR or --policy ADDR")
	}
	t, err := parseTarget(addr)
	if err != nil {
		return err
	}
	cfg.Target = t
	if cfg.Expect != "greylist" && cfg.Expect != "pass" {
		return fmt.Errorf("--expect %q: want greylist or pass", cfg.Expect)
	}
	if cfg.Delay < 0 || cfg.Margin < 0 || cfg.Timeout <= 0 {
		return errors.New("--delay and --retry-margin must not be negative, --timeout must be more than 0")
	}
	switch {
	case warmup == "auto" && cfg.Shape.NewShare < 1:
		cfg.Warmup = cfg.Delay + cfg.Margin
	case warmup == "auto":
	default:
		if cfg.Warmup, err = time.ParseDuration(warmup); err != nil || cfg.Warmup < 0 {
			return fmt.Errorf("--warmup %q: want auto or a duration", warmup)
		}
	}
	return nil
}
