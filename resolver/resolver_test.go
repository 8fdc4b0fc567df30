package resolver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
)

func lookupA(t *testing.T, r *Resolver, name string) *Answer {
	t.Helper()
	a, err := r.Lookup(context.Background(), name, dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCacheHitSendsNoPacket(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	r, _ := newResolver(t, Config{}, srv.Addr())
	for range 3 {
		if a := lookupA(t, r, "host.example.test"); len(a.Records) != 1 {
			t.Fatalf("answer: %v", a.Records)
		}
	}
	// Case does not make another query.
	lookupA(t, r, "HOST.Example.Test.")
	if got := srv.Queries("host.example.test", dns.TypeA); got != 1 {
		t.Errorf("server got %d queries, want 1", got)
	}
	if s := r.Stats(); s.Lookups != 4 || s.CacheHits != 3 || s.Queries != 1 || s.Cached != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestTTLExpiry(t *testing.T) {
	tests := []struct {
		name           string
		minTTL, maxTTL time.Duration
		qname          string
		qtype          uint16
		fresh, stale   time.Duration // still cached after fresh, expired after stale
	}{
		{"record TTL", 0, 0, "host.example.test", dns.TypeA, 299 * time.Second, 300 * time.Second},
		{"short TTL", 0, 0, "short.example.test", dns.TypeA, 9 * time.Second, 10 * time.Second},
		{"CNAME chain takes the smallest TTL", 0, 0, "www.example.test", dns.TypeA, 299 * time.Second, 300 * time.Second},
		{"max cap", 0, time.Minute, "host.example.test", dns.TypeA, 59 * time.Second, 60 * time.Second},
		{"min cap", 5 * time.Minute, 0, "short.example.test", dns.TypeA, 299 * time.Second, 300 * time.Second},
		// RFC 2308: negative answers live for the SOA minimum (60s), not
		// the SOA's own TTL (300s).
		{"NXDOMAIN", 0, 0, "nope.example.test", dns.TypeA, 59 * time.Second, 60 * time.Second},
		{"NODATA", 0, 0, "v6only.example.test", dns.TypeA, 59 * time.Second, 60 * time.Second},
		{"negative with min cap", 2 * time.Minute, 0, "nope.example.test", dns.TypeA, 119 * time.Second, 120 * time.Second},
		{"negative with max cap", 0, 30 * time.Second, "nope.example.test", dns.TypeA, 29 * time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := dnstest.Start(t, "testdata/resolver.zone")
			r, clock := newResolver(t, Config{MinTTL: tt.minTTL, MaxTTL: tt.maxTTL}, srv.Addr())
			ctx := context.Background()
			if _, err := r.Lookup(ctx, tt.qname, tt.qtype); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.fresh)
			if _, err := r.Lookup(ctx, tt.qname, tt.qtype); err != nil {
				t.Fatal(err)
			}
			if got := srv.Total(); got != 1 {
				t.Fatalf("after %v: %d queries, want 1 (cached)", tt.fresh, got)
			}
			clock.Advance(tt.stale - tt.fresh)
			if _, err := r.Lookup(ctx, tt.qname, tt.qtype); err != nil {
				t.Fatal(err)
			}
			if got := srv.Total(); got != 2 {
				t.Fatalf("after %v: %d queries, want 2 (expired)", tt.stale, got)
			}
		})
	}
}

func TestNegativeAnswers(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	r, _ := newResolver(t, Config{}, srv.Addr())
	a := lookupA(t, r, "nope.example.test")
	if a.Rcode != dns.RcodeNameError || len(a.Records) != 0 {
		t.Errorf("NXDOMAIN answer: %s %v", dns.RcodeToString[a.Rcode], a.Records)
	}
	a = lookupA(t, r, "v6only.example.test")
	if a.Rcode != dns.RcodeSuccess || len(a.Records) != 0 {
		t.Errorf("NODATA answer: %s %v", dns.RcodeToString[a.Rcode], a.Records)
	}
	lookupA(t, r, "nope.example.test")
	lookupA(t, r, "v6only.example.test")
	if got := srv.Total(); got != 2 {
		t.Errorf("%d queries, want 2 (negative answers cached)", got)
	}
}

func TestCacheIsBounded(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	r, _ := newResolver(t, Config{CacheSize: 2}, srv.Addr())
	lookupA(t, r, "host.example.test")
	lookupA(t, r, "mx1.example.test")
	lookupA(t, r, "host.example.test") // host is now the most recently used
	lookupA(t, r, "mx2.example.test")  // evicts mx1
	lookupA(t, r, "host.example.test")
	lookupA(t, r, "mx1.example.test")
	if got := srv.Queries("host.example.test", dns.TypeA); got != 1 {
		t.Errorf("host: %d queries, want 1", got)
	}
	if got := srv.Queries("mx1.example.test", dns.TypeA); got != 2 {
		t.Errorf("mx1: %d queries, want 2 (evicted)", got)
	}
	if got := r.Stats().Cached; got != 2 {
		t.Errorf("%d cached answers, want 2", got)
	}
}

func TestCacheDisabled(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	r, _ := newResolver(t, Config{CacheSize: -1}, srv.Addr())
	lookupA(t, r, "host.example.test")
	lookupA(t, r, "host.example.test")
	if got := srv.Total(); got != 2 {
		t.Errorf("%d queries, want 2", got)
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	// The answer comes late enough for every caller to join the query.
	srv.SetDelay("host.example.test", 200*time.Millisecond)
	r, _ := newResolver(t, Config{}, srv.Addr())
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			a, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA)
			if err == nil && len(a.Records) != 1 {
				err = fmt.Errorf("answer %v", a.Records)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := srv.Queries("host.example.test", dns.TypeA); got != 1 {
		t.Errorf("server got %d queries for %d concurrent lookups, want 1", got, n)
	}
}

func TestCallerCancelDoesNotCancelOthers(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	srv.SetDelay("host.example.test", 200*time.Millisecond)
	r, _ := newResolver(t, Config{}, srv.Addr())

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := r.Lookup(ctx, "host.example.test", dns.TypeA)
		first <- err
	}()
	for srv.Queries("host.example.test", dns.TypeA) == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() {
		_, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA)
		second <- err
	}()
	for waiters(r, "host.example.test.", dns.TypeA) < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	if err := <-second; err != nil {
		t.Errorf("other caller: %v", err)
	}
	if got := srv.Queries("host.example.test", dns.TypeA); got != 1 {
		t.Errorf("%d queries, want 1", got)
	}
}

func TestAbandonedQueryIsCancelled(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	srv.SetDrop("host.example.test")
	r, _ := newResolver(t, Config{Timeout: time.Hour}, srv.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.Lookup(ctx, "host.example.test", dns.TypeA)
		done <- err
	}()
	for srv.Queries("host.example.test", dns.TypeA) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	// With its only caller gone the query stops: a new lookup starts a
	// fresh one instead of joining a dead one.
	srv.Reset("host.example.test")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := r.Lookup(ctx2, "host.example.test", dns.TypeA); err != nil {
		t.Fatal(err)
	}
}

func TestRoundRobin(t *testing.T) {
	s1 := dnstest.Start(t, "testdata/resolver.zone")
	s2 := dnstest.Start(t, "testdata/resolver.zone")
	r, _ := newResolver(t, Config{}, s1.Addr(), s2.Addr())
	for i := range 10 {
		if _, err := r.Lookup(context.Background(), fmt.Sprintf("n%d.example.test", i), dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	if s1.Total() != 5 || s2.Total() != 5 {
		t.Errorf("queries spread %d/%d, want 5/5", s1.Total(), s2.Total())
	}
}

func TestFailover(t *testing.T) {
	t.Run("dead server", func(t *testing.T) {
		live := dnstest.Start(t, "testdata/resolver.zone")
		const timeout = 2 * time.Second
		r, _ := newResolver(t, Config{Timeout: timeout}, dnstest.Dead(t), live.Addr())
		for i := range 4 {
			start := time.Now()
			a, err := r.Lookup(context.Background(), fmt.Sprintf("n%d.example.test", i), dns.TypeA)
			if err != nil {
				t.Fatalf("lookup %d: %v", i, err)
			}
			if a.Rcode != dns.RcodeNameError {
				t.Errorf("lookup %d: %s", i, dns.RcodeToString[a.Rcode])
			}
			if el := time.Since(start); el >= timeout {
				t.Errorf("lookup %d took %v, beyond the %v deadline", i, el, timeout)
			}
		}
		if got := live.Total(); got != 4 {
			t.Errorf("live server got %d queries, want 4", got)
		}
	})
	t.Run("SERVFAIL then answer", func(t *testing.T) {
		bad := dnstest.Start(t, "testdata/resolver.zone")
		bad.SetRcode("example.test", dns.RcodeServerFailure)
		good := dnstest.Start(t, "testdata/resolver.zone")
		r, _ := newResolver(t, Config{}, bad.Addr(), good.Addr())
		for i := range 2 { // starts once at each server
			if a := lookupA(t, r, fmt.Sprintf("n%d.example.test", i)); a.Rcode != dns.RcodeNameError {
				t.Errorf("rcode %s", dns.RcodeToString[a.Rcode])
			}
		}
		if bad.Total() == 0 || good.Total() != 2 {
			t.Errorf("queries bad=%d good=%d", bad.Total(), good.Total())
		}
	})
	t.Run("every server fails", func(t *testing.T) {
		s1 := dnstest.Start(t, "testdata/resolver.zone")
		s1.SetRcode("example.test", dns.RcodeServerFailure)
		s2 := dnstest.Start(t, "testdata/resolver.zone")
		s2.SetRcode("example.test", dns.RcodeRefused)
		r, _ := newResolver(t, Config{}, s1.Addr(), s2.Addr())
		_, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA)
		if !errors.Is(err, ErrServerFailure) {
			t.Fatalf("got %v, want ErrServerFailure", err)
		}
		// The failure is remembered: asking again sends nothing.
		_, err = r.Lookup(context.Background(), "host.example.test", dns.TypeA)
		if !errors.Is(err, ErrServerFailure) {
			t.Fatalf("again: got %v, want ErrServerFailure", err)
		}
		if got := s1.Total() + s2.Total(); got != 2 {
			t.Errorf("%d queries, want 2", got)
		}
	})
	t.Run("all dead", func(t *testing.T) {
		r, _ := newResolver(t, Config{Timeout: 300 * time.Millisecond}, dnstest.Dead(t), dnstest.Dead(t))
		start := time.Now()
		_, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA)
		if !IsTimeout(err) {
			t.Fatalf("got %v, want a timeout", err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("lookup took %v with a 300ms timeout", el)
		}
	})
	t.Run("caller deadline", func(t *testing.T) {
		r, _ := newResolver(t, Config{Timeout: time.Hour}, dnstest.Dead(t))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := r.Lookup(ctx, "host.example.test", dns.TypeA); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestTruncatedAnswerRetriesOverTCP(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	r, _ := newResolver(t, Config{}, srv.Addr())
	a := lookupA(t, r, "big.example.test")
	if len(a.Records) != 2 {
		t.Fatalf("answer %v", a.Records)
	}
	if got := srv.Queries("big.example.test", dns.TypeA); got != 2 {
		t.Errorf("%d queries, want 2 (UDP then TCP)", got)
	}
}

func TestNewResolver(t *testing.T) {
	r, err := New(Config{ResolvConf: "testdata/resolv.conf"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}
	if got := r.Servers(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("servers from resolv.conf: %v, want %v", got, want)
	}
	if r.Timeout() != DefaultTimeout {
		t.Errorf("timeout %v", r.Timeout())
	}
	r, err = New(Config{Servers: []string{"127.0.0.1:5353", "::1", "192.0.2.1"}})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"127.0.0.1:5353", "[::1]:53", "192.0.2.1:53"}
	if got := r.Servers(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("servers: %v, want %v", got, want)
	}
	for _, cfg := range []Config{
		{ResolvConf: "testdata/missing.conf"},
		{Servers: []string{"not a server"}},
		{Servers: []string{"127.0.0.1:53"}, MinTTL: time.Hour, MaxTTL: time.Minute},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted it", cfg)
		}
	}
}

// waiters is the number of callers waiting for the query in flight.
func waiters(r *Resolver, name string, qtype uint16) int {
	r.flights.mu.Lock()
	defer r.flights.mu.Unlock()
	if f := r.flights.m[cacheKey{name, qtype}]; f != nil {
		return f.waiters
	}
	return 0
}
