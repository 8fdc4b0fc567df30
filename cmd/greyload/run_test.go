package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/internal/sockaddr"
	"github.com/greymilter/greymilter/milter"
	"github.com/greymilter/greymilter/policyd"
)

// memoryGreylist defers a triplet the first time and passes it after,
// whatever the time: the rule greyload checks, without a clock.
type memoryGreylist struct{ seen sync.Map }

func (g *memoryGreylist) Decide(ctx context.Context, r *engine.Request) engine.Verdict {
	k := greylist.DefaultKeyer.Key(r.ClientAddr, r.Sender, r.Recipient)
	if _, loaded := g.seen.LoadOrStore(k, true); loaded {
		return engine.Verdict{Action: engine.Pass}
	}
	return engine.Verdict{Action: engine.Defer, Code: 451, ECode: "4.7.1", Text: "Greylisted, please try again in 1 seconds"}
}

type passAll struct{}

func (passAll) Decide(ctx context.Context, r *engine.Request) engine.Verdict {
	return engine.Verdict{Action: engine.Pass}
}

// serveFrontEnd runs greymilter's milter or policy front end in front of
// d on a loopback port.
func serveFrontEnd(t *testing.T, proto string, d milter.Decider) sockaddr.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if proto == "milter" {
		s := milter.New(milter.Config{Decider: d, Logger: quiet})
		go s.Serve(context.Background(), ln)
		t.Cleanup(func() { s.Shutdown(context.Background()) })
	} else {
		s := policyd.New(policyd.Config{Decider: d, Logger: quiet})
		go s.Serve(context.Background(), ln)
		t.Cleanup(func() { s.Shutdown(context.Background()) })
	}
	return sockaddr.Addr{Network: "tcp", Address: ln.Addr().String()}
}

func TestRunChecksAnswers(t *testing.T) {
	tests := []struct {
		proto, expect string
		decider       func() milter.Decider
		mismatches    string // "none", or "new": every first-time decision
	}{
		{"milter", "greylist", func() milter.Decider { return &memoryGreylist{} }, "none"},
		{"policy", "greylist", func() milter.Decider { return &memoryGreylist{} }, "none"},
		{"milter", "pass", func() milter.Decider { return passAll{} }, "none"},
		{"policy", "pass", func() milter.Decider { return passAll{} }, "none"},
		// A server that lets first-time triplets through is wrong, however fast.
		{"milter", "greylist", func() milter.Decider { return passAll{} }, "new"},
		{"policy", "greylist", func() milter.Decider { return passAll{} }, "new"},
		// And one that greylists is wrong where everything must pass.
		{"policy", "pass", func() milter.Decider { return &memoryGreylist{} }, "new"},
	}
	for _, tt := range tests {
		t.Run(tt.proto+"/"+tt.expect+"/"+tt.mismatches, func(t *testing.T) {
			var log strings.Builder
			cfg := &Config{
				Proto: tt.proto, Target: serveFrontEnd(t, tt.proto, tt.decider()),
				Concurrency: 4, Count: 300, MaxTime: 30 * time.Second, Timeout: 5 * time.Second,
				MaxErrors: 0, Expect: tt.expect, Log: &log,
				Shape: Shape{Seed: 1, Subnets: 20, HostsPerSubnet: 3, IPv6Share: 0.2, Senders: 100, Recipients: 100, MaxRcpts: 2, NewShare: 0.5},
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Stopped != "count" || res.Decisions < 300 {
				t.Fatalf("errors %d, stopped by %s after %d decisions; log:\n%s", res.Errors, res.Stopped, res.Decisions, log.String())
			}
			if res.New == 0 || res.Retries == 0 {
				t.Errorf("%d first-time decisions and %d retries: want both", res.New, res.Retries)
			}
			want := 0
			if tt.mismatches == "new" {
				want = res.New
			}
			if res.Mismatches != want {
				t.Errorf("%d mismatches, want %d; log:\n%s", res.Mismatches, want, log.String())
			}
			if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
				t.Errorf("latency p50 %v p99 %v max %v: not ordered", res.P50, res.P99, res.Max)
			}
		})
	}
}
