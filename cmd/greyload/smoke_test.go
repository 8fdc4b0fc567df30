package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/sockaddr"
	"github.com/greymilter/greymilter/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// TestSmokeGreymilter runs a few hundred decisions through each of the real
// greymilter binary's front ends, with retries after its delay: every
// first-time triplet must be deferred and every retry must pass. This is
// the short run of greyload that `make test` does; `make bench` measures.
func TestSmokeGreymilter(t *testing.T) {
	for _, proto := range []string{"milter", "policy"} {
		t.Run(proto, func(t *testing.T) {
			g := harness.Greymilter(t, "--delay", "1s", "--auto-whitelist-clients", "0", "--policy-socket", "inet:127.0.0.1:0")
			target := g.Socket
			if proto == "policy" {
				target = "inet:" + g.PolicyAddr()
			}
			addr, err := sockaddr.Parse(target)
			if err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			cfg := &Config{
				Proto: proto, Target: addr,
				Concurrency: 4, Count: 300, MaxTime: 60 * time.Second, Timeout: 10 * time.Second,
				Delay: time.Second, Margin: 100 * time.Millisecond, Warmup: 1100 * time.Millisecond,
				MaxErrors: 0, Expect: "greylist", Log: &log,
				Shape: Shape{Seed: 1, Subnets: 400, HostsPerSubnet: 5, IPv6Share: 0.1, Senders: 5000, Recipients: 2000, MaxRcpts: 2, NewShare: 0.5},
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var table strings.Builder
			res.WriteTable(&table)
			t.Logf("\n%s", table.String())
			if res.Errors != 0 || res.Mismatches != 0 {
				t.Errorf("%d errors and %d mismatches, want none:\n%s", res.Errors, res.Mismatches, log.String())
			}
			if res.Decisions < cfg.Count || res.New == 0 || res.Retries == 0 {
				t.Errorf("%d decisions (%d first-time, %d retries): want %d with both kinds", res.Decisions, res.New, res.Retries, cfg.Count)
			}
		})
	}
}
