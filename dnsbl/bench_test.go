package dnsbl

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
)

func BenchmarkCachedLookup(b *testing.B) {
	srv := startBench(b)
	r, _ := newResolver(b, Config{}, srv)
	ctx := context.Background()
	if _, err := r.Lookup(ctx, "2.0.0.127.a.bl.test", dns.TypeA); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Lookup(ctx, "2.0.0.127.a.bl.test", dns.TypeA); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if s := r.Stats(); s.Queries != 1 {
		b.Errorf("%d queries sent, want 1", s.Queries)
	}
}

// BenchmarkCheck runs whole checks against three lists, with a warm cache
// (every answer cached) and with none (every check asks the server).
func BenchmarkCheck(b *testing.B) {
	zones := mustZones(b, "a.bl.test", "b.bl.test", "c.bl.test")
	addr := netip.MustParseAddr("192.0.2.3")
	for _, bc := range []struct {
		name  string
		cache int
	}{{"warm", 0}, {"nocache", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			r, _ := newResolver(b, Config{CacheSize: bc.cache}, dnstest.Start(b, blZones...).Addr())
			l := NewList(r, Majority, nil, zones...)
			ctx := context.Background()
			if !l.Check(ctx, addr).Listed {
				b.Fatal("not listed")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if !l.Check(ctx, addr).Listed {
					b.Fatal("not listed")
				}
			}
		})
	}
}
