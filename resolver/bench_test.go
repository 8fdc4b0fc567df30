package resolver

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
)

func BenchmarkCachedLookup(b *testing.B) {
	srv := dnstest.Start(b, "testdata/resolver.zone")
	r, _ := newResolver(b, Config{}, srv.Addr())
	ctx := context.Background()
	if _, err := r.Lookup(ctx, "host.example.test", dns.TypeA); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Lookup(ctx, "host.example.test", dns.TypeA); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if s := r.Stats(); s.Queries != 1 {
		b.Errorf("%d queries sent, want 1", s.Queries)
	}
}
