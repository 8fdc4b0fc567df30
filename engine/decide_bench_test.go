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

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/internal/clocktest"
)

func newBenchClock() *clocktest.Clock { return clocktest.New(time.Unix(1.8e9, 0)) }

// benchEngine is greymilter's core pipeline (bypass, known, greylist) on a
// real SQLite store: ":memory:" or a file.
func benchEngine(b *testing.B, db string, clock engine.Clock, logger *slog.Logger) *engine.Engine {
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
		Greylist: &greylist.Greylist{Store: store, Rules: greylist.DefaultRules},
		Keyer:    greylist.DefaultKeyer,
		Hostname: "mx.example.net",
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	return engine.New(engine.Options{Clock: clock, Logger: logger},
		&engine.Bypass{Trusted: trusted}, g.KnownStep(), g.GreylistStep())
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
//   - known-logged: the same with the decision's log line formatted.
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
		}{{"known", quiet}, {"known-logged", logged}} {
			b.Run(db+"/"+lg.name, func(b *testing.B) {
				clock := newBenchClock()
				e := benchEngine(b, db, clock, lg.logger)
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
