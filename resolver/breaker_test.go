package resolver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
)

func TestFailuresAreRememberedBriefly(t *testing.T) {
	t.Run("SERVFAIL", func(t *testing.T) {
		srv := dnstest.Start(t, "testdata/resolver.zone")
		srv.SetRcode("host.example.test", dns.RcodeServerFailure)
		r, clock := newResolver(t, Config{}, srv.Addr())
		for range 3 {
			if _, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA); !errors.Is(err, ErrServerFailure) {
				t.Fatalf("got %v, want ErrServerFailure", err)
			}
		}
		if got := srv.Queries("host.example.test", dns.TypeA); got != 2 { // the first lookup's two attempts
			t.Errorf("%d queries, want 2", got)
		}
		// Other names and types are asked as usual.
		lookupA(t, r, "short.example.test")
		srv.Reset("host.example.test")
		clock.Advance(FailureTTL - time.Second)
		if _, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA); err == nil {
			t.Fatal("answer before the failure expired")
		}
		clock.Advance(time.Second)
		if a := lookupA(t, r, "host.example.test"); len(a.Records) != 1 {
			t.Errorf("after expiry: %v", a.Records)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		srv := dnstest.Start(t, "testdata/resolver.zone")
		srv.SetGarbage("host.example.test")
		r, _ := newResolver(t, Config{Timeout: time.Second}, srv.Addr())
		for range 3 {
			start := time.Now()
			if _, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA); err == nil || IsTimeout(err) {
				t.Fatalf("got %v, want a failure that is no timeout", err)
			}
			if el := time.Since(start); el > 100*time.Millisecond {
				t.Errorf("lookup took %v, want at once", el)
			}
		}
		if got := srv.Queries("host.example.test", dns.TypeA); got != 2 {
			t.Errorf("%d queries, want 2", got)
		}
		if !r.Upstreams()[0].Up {
			t.Error("a server that answers garbage is not a dead one")
		}
	})
	t.Run("timeout with the full budget", func(t *testing.T) {
		srv := dnstest.Start(t, "testdata/resolver.zone")
		srv.SetDrop("host.example.test")
		r, _ := newResolver(t, Config{Timeout: 300 * time.Millisecond}, srv.Addr())
		if _, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA); !IsTimeout(err) {
			t.Fatalf("got %v, want a timeout", err)
		}
		start := time.Now()
		_, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA)
		if !IsTimeout(err) || time.Since(start) > 50*time.Millisecond {
			t.Errorf("second lookup: %v after %v, want the remembered timeout at once", err, time.Since(start))
		}
		if got := srv.Queries("host.example.test", dns.TypeA); got != 2 {
			t.Errorf("%d queries, want 2", got)
		}
	})
	t.Run("timeout of a lookup given little time", func(t *testing.T) {
		srv := dnstest.Start(t, "testdata/resolver.zone")
		srv.SetDrop("host.example.test")
		r, _ := newResolver(t, Config{Timeout: 2 * time.Second}, srv.Addr())
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r.Lookup(ctx, "host.example.test", dns.TypeA) //nolint:errcheck // a timeout
		srv.Reset("host.example.test")
		if a := lookupA(t, r, "host.example.test"); len(a.Records) != 1 {
			t.Errorf("answer %v", a.Records)
		}
	})
}

// syncBuffer is a log destination that the resolver's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.b.String(), s)
}

func TestCircuitBreaker(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	srv.SetDrop("example.test") // a black hole, until Reset
	var log syncBuffer
	const timeout = 300 * time.Millisecond
	r, clock := newResolver(t, Config{Timeout: timeout, Logger: slog.New(slog.NewTextHandler(&log, nil))}, srv.Addr())

	// Distinct names, so that remembered failures do not hide the server.
	name := func(i int) string { return fmt.Sprintf("n%d.example.test", i) }
	i := 0
	for ; r.Upstreams()[0].Up; i++ {
		if i > BreakAfter {
			t.Fatalf("still up after %d timed-out lookups", i)
		}
		if _, err := r.Lookup(context.Background(), name(i), dns.TypeA); !IsTimeout(err) {
			t.Fatalf("lookup %d: %v, want a timeout", i, err)
		}
	}
	// Each lookup makes two attempts; each timeout counts.
	if want := (BreakAfter + 1) / 2; i != want {
		t.Errorf("down after %d lookups, want %d", i, want)
	}
	sent := srv.Total()
	for j := range 20 {
		start := time.Now()
		_, err := r.Lookup(context.Background(), name(100+j), dns.TypeA)
		if !errors.Is(err, ErrUpstreamDown) {
			t.Fatalf("lookup with the breaker open: %v, want ErrUpstreamDown", err)
		}
		if el := time.Since(start); el > 50*time.Millisecond {
			t.Errorf("lookup with the breaker open took %v", el)
		}
	}
	if srv.Total() != sent {
		t.Errorf("%d queries sent to a server marked down", srv.Total()-sent)
	}

	// The server comes back; the next lookup after ProbeEvery probes it
	// in the background (and still abstains at once itself).
	srv.Reset("example.test")
	clock.Advance(ProbeEvery)
	if _, err := r.Lookup(context.Background(), name(200), dns.TypeA); !errors.Is(err, ErrUpstreamDown) {
		t.Fatalf("probing lookup: %v, want ErrUpstreamDown", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !r.Upstreams()[0].Up {
		if time.Now().After(deadline) {
			t.Fatal("the server answers again but is still marked down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a := lookupA(t, r, name(201)); a.Rcode != dns.RcodeNameError {
		t.Errorf("after recovery: %s", dns.RcodeToString[a.Rcode])
	}
	// The probe's answer was cached.
	before := srv.Total()
	lookupA(t, r, name(200))
	if srv.Total() != before {
		t.Error("the probe's answer was not cached")
	}
	if log.count("dns upstream down") != 1 || log.count("dns upstream back") != 1 {
		t.Errorf("want one down and one back line:\n%s", log.b.String())
	}
}

func TestSuspectServerIsAskedLast(t *testing.T) {
	live := dnstest.Start(t, "testdata/resolver.zone")
	const timeout = 400 * time.Millisecond
	r, _ := newResolver(t, Config{Timeout: timeout}, dnstest.Dead(t), live.Addr())
	slow := 0
	for i := range 10 {
		start := time.Now()
		if _, err := r.Lookup(context.Background(), fmt.Sprintf("n%d.example.test", i), dns.TypeA); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 100*time.Millisecond {
			slow++
		}
	}
	// Only the first lookup that tried the dead server waited for it.
	if slow > 1 {
		t.Errorf("%d of 10 lookups waited for the dead server, want at most 1", slow)
	}
}

// TestBreakerSparesAServerThatAnswers: names that time out at a server
// that answers others (a healthy recursive resolver in front of a dead
// zone) do not mark it down.
func TestBreakerSparesAServerThatAnswers(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	srv.SetDrop("dead.example.test")
	r, _ := newResolver(t, Config{Timeout: 300 * time.Millisecond, CacheSize: -1}, srv.Addr())
	var wg sync.WaitGroup
	for i := range 2 * BreakAfter {
		wg.Go(func() {
			r.Lookup(context.Background(), fmt.Sprintf("n%d.dead.example.test", i), dns.TypeA) //nolint:errcheck // times out
		})
		wg.Go(func() {
			// Answers keep coming while the others wait.
			for range 5 {
				if _, err := r.Lookup(context.Background(), "host.example.test", dns.TypeA); err != nil {
					t.Error(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if !r.Upstreams()[0].Up {
		t.Error("a server that answers was marked down")
	}
}
