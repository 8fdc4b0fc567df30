package pgstore

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/storetest"
	"github.com/greymilter/greymilter/internal/pgtest"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

const outageTimeout = 300 * time.Millisecond

// outageMargin is what an operation may take past the timeout on a
// loaded machine.
const outageMargin = 700 * time.Millisecond

// TestOutages: with the server stopped, then frozen (SIGSTOP: connections
// open, nothing answers), every operation, however many at once, fails
// within the timeout; passed triplets still pass from the cache; the log
// says so once per outage; after the server returns the store works again
// by itself within a second, with everything committed before.
func TestOutages(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDatabase(t)
	var log syncBuffer
	s := openDSN(t, dsn, greylist.Options{Timeout: outageTimeout, Log: slog.New(slog.NewTextHandler(&log, nil))})
	ctx := context.Background()
	passed, waiting := storetest.Key(1), storetest.Key(2)
	storetest.Attempt(t, s, passed, storetest.T0)
	storetest.Attempt(t, s, passed, storetest.T0.Add(6*time.Minute))
	storetest.Attempt(t, s, waiting, storetest.T0)

	outages := []struct {
		name       string
		start, end func() error
	}{
		{"stopped", srv.Stop, srv.Start},
		{"frozen", srv.Freeze, srv.Thaw},
	}
	for i, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			if err := o.start(); err != nil {
				t.Fatal(err)
			}
			ended := false
			defer func() {
				if !ended {
					o.end()
				}
			}()
			// More at once than the pool has connections.
			const n = 3 * defaultMaxConns
			var wg sync.WaitGroup
			var mu sync.Mutex
			var worst time.Duration
			for j := range n {
				wg.Go(func() {
					start := time.Now()
					_, err := s.Attempt(ctx, storetest.Key(100+j), storetest.Rules, storetest.T0)
					took := time.Since(start)
					if err == nil {
						t.Errorf("an attempt succeeded with the server %s", o.name)
					}
					mu.Lock()
					worst = max(worst, took)
					mu.Unlock()
				})
			}
			wg.Wait()
			t.Logf("server %s: worst failed attempt took %v (timeout %v)", o.name, worst.Round(time.Millisecond), outageTimeout)
			if worst > outageTimeout+outageMargin {
				t.Errorf("an attempt took %v with the server %s, want at most %v", worst, o.name, outageTimeout+outageMargin)
			}
			if rec, found, err := s.Lookup(ctx, passed); err != nil || !found || !rec.Passed() {
				t.Errorf("passed triplet during the outage: %+v %v %v, want it from the cache", rec, found, err)
			}
			if n := strings.Count(log.String(), "database unavailable"); n != i+1 {
				t.Errorf("%d \"database unavailable\" lines after %d outages, want one per outage:\n%s", n, i+1, log.String())
			}
			if s.Available() {
				t.Error("the store says the database is available")
			}

			if err := o.end(); err != nil {
				t.Fatal(err)
			}
			ended = true
			back := time.Now()
			var res greylist.Result
			for {
				var err error
				res, err = s.Attempt(ctx, waiting, storetest.Rules, storetest.T0.Add(6*time.Minute+time.Duration(i)*time.Second))
				if err == nil {
					break
				}
				if time.Since(back) > 10*time.Second {
					t.Fatalf("no attempt succeeds 10s after the server came back: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			recovered := time.Since(back)
			t.Logf("server %s: the first attempt succeeded %v after its return", o.name, recovered.Round(time.Millisecond))
			if recovered > time.Second {
				t.Errorf("decisions resumed %v after the server's return, want within a second", recovered)
			}
			if want := []greylist.Outcome{greylist.Passed, greylist.Known}[i]; res.Outcome != want {
				t.Errorf("waiting triplet after the outage: %v, want %v (its first attempt kept)", res.Outcome, want)
			}
			if !strings.Contains(log.String(), "database back") {
				t.Errorf("no \"database back\" in the log:\n%s", log.String())
			}
		})
	}
	if s.Failures() < 2*3*defaultMaxConns {
		t.Errorf("%d failures counted, want at least one per failed attempt", s.Failures())
	}
}
