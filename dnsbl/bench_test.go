package dnsbl

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/resolver"
)

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
			r, _ := newResolver(b, resolver.Config{CacheSize: bc.cache}, dnstest.Start(b, blZones...).Addr())
			l := NewList(r, Majority, nil, zones...)
			l.Instrument(NewMetrics()) // as greymilter runs it
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

// BenchmarkCheckSlowLists asks three lists whose server answers after 5ms,
// with no cache: the lists are asked at once, so a check costs one answer
// time, not three.
func BenchmarkCheckSlowLists(b *testing.B) {
	zones := mustZones(b, "a.bl.test", "b.bl.test", "c.bl.test")
	addr := netip.MustParseAddr("192.0.2.3")
	srv := dnstest.Start(b, blZones...)
	for _, z := range []string{"a.bl.test", "b.bl.test", "c.bl.test"} {
		srv.SetDelay(z, 5*time.Millisecond)
	}
	r, _ := newResolver(b, resolver.Config{CacheSize: -1}, srv.Addr())
	l := NewList(r, Majority, nil, zones...)
	ctx := context.Background()
	for b.Loop() {
		if !l.Check(ctx, addr).Listed {
			b.Fatal("not listed")
		}
	}
}
