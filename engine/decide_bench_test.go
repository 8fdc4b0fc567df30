package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/internal/clocktest"
	"github.com/greymilter/greymilter/resolver"
)

func newBenchClock() *clocktest.Clock { return clocktest.New(time.Unix(1.8e9, 0)) }

// benchEngine is greymilter's core pipeline (bypass, known, greylist) on a
// real SQLite store: ":memory:" or a file.
func benchEngine(b *testing.B, db string, clock engine.Clock, logger *slog.Logger, extra ...engine.Step) *engine.Engine {
	b.Helper()
	if db == "file" {
		db = filepath.Join(b.TempDir(), "greymilter.db")
	}
	store, err := sqlitestore.Open(db)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	g := &engine.Greylisting{
		Greylist: &greylist.Greylist{Store: store, Rules: greylist.DefaultRules, Metrics: greylist.NewMetrics()},
		Keyer:    greylist.DefaultKeyer,
		Hostname: "mx.example.net",
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	steps := append(append([]engine.Step{&engine.Bypass{Trusted: trusted}}, extra...), g.KnownStep(), g.GreylistStep())
	return engine.New(engine.Options{Clock: clock, Logger: logger}, steps...)
}

// benchDNSBL is a DNSBL step in reject mode on two zones of a test DNS
// server, on clock (whose time the resolver's cache follows).
func benchDNSBL(b *testing.B, clock resolver.Clock) engine.Step {
	b.Helper()
	srv := dnstest.Start(b, "testdata/dnsbl.zone")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Clock: clock, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	var zones []dnsbl.Zone
	for _, name := range []string{"bl1.test", "bl2.test"} {
		z, err := dnsbl.ParseZone(name)
		if err != nil {
			b.Fatal(err)
		}
		zones = append(zones, z)
	}
	list := dnsbl.NewList(res, dnsbl.Any, quiet, zones...)
	list.Instrument(dnsbl.NewMetrics()) // as greymilter runs it
	return &engine.DNSBL{List: list}
}

// quiet drops decision log lines before they are formatted; logged formats
// them, as greymilter does at its default level, into io.Discard.
var (
	quiet  = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	logged = slog.New(slog.NewTextHandler(io.Discard, nil))
)

func request(i int) *engine.Request {
	return &engine.Request{
		ClientAddr: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}),
		ClientName: "mail.example.com",
		Helo:       "mail.example.com",
		Sender:     "alice@example.com",
		Recipient:  fmt.Sprintf("user%d@example.org", i),
	}
}

// BenchmarkDecide measures one engine decision on :memory: and on a file
// database:
//   - new: a first-time triplet, deferred (one write, committed before the
//     answer);
//   - new-parallel: the same from many goroutines, which share commits;
//   - known: a triplet that passed before (the common case of real mail);
//   - known-logged: the same with the decision's log line formatted;
//   - known-dnsbl: known with a DNSBL step (two zones, reject mode) before
//     the known step, its answers cached: the cost of checking known
//     clients against the DNSBL.
func BenchmarkDecide(b *testing.B) {
	for _, db := range []string{":memory:", "file"} {
		b.Run(db+"/new", func(b *testing.B) {
			e := benchEngine(b, db, newBenchClock(), quiet)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if v := e.Decide(context.Background(), request(i)); v.Action != engine.Defer {
					b.Fatalf("first-time triplet: %+v", v)
				}
				i++
			}
		})
		b.Run(db+"/new-parallel", func(b *testing.B) {
			e := benchEngine(b, db, newBenchClock(), quiet)
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if v := e.Decide(context.Background(), request(int(next.Add(1)))); v.Action != engine.Defer {
						b.Errorf("first-time triplet: %+v", v)
						return
					}
				}
			})
		})
		for _, lg := range []struct {
			name   string
			logger *slog.Logger
			dnsbl  bool
		}{{"known", quiet, false}, {"known-logged", logged, false}, {"known-dnsbl", quiet, true}} {
			b.Run(db+"/"+lg.name, func(b *testing.B) {
				clock := newBenchClock()
				var extra []engine.Step
				if lg.dnsbl {
					// A listing is newer than a pass: known clients are
					// looked up too (from the cache once warm).
					extra = append(extra, benchDNSBL(b, clock))
				}
				e := benchEngine(b, db, clock, lg.logger, extra...)
				req := request(1)
				e.Decide(context.Background(), req)
				clock.Advance(greylist.DefaultRules.Delay + time.Second)
				if v := e.Decide(context.Background(), req); v.Action != engine.Pass {
					b.Fatalf("retry after the delay: %+v", v)
				}
				b.ReportAllocs()
				for b.Loop() {
					if v := e.Decide(context.Background(), req); v.Action != engine.Pass {
						b.Fatalf("known triplet: %+v", v)
					}
				}
			})
		}
	}
}
