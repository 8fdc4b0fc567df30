// Command seed fills a greymilter SQLite database with triplets through
// the real store, for the benchmarks of a large store: live triplets that
// passed greylisting an hour ago, and expired ones, first and last seen 40
// days ago and never retried, that the next purge removes.
//
//	seed --db /tmp/big.db --live 500000 --expired 500000
//
// Its clients are in 10.0.0.0/8, outside greyload's address ranges, so
// greyload's first-time triplets stay first-time.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
)

func main() {
	fs := pflag.NewFlagSet("seed", pflag.ExitOnError)
	db := fs.String("db", "", "SQLite database file to fill (created if missing)")
	live := fs.Int("live", 500000, "triplets that passed an hour ago")
	expired := fs.Int("expired", 500000, "triplets last seen 40 days ago, past the default --max-age")
	workers := fs.Int("concurrency", 512, "attempts in flight: they share write transactions")
	fs.Parse(os.Args[1:])
	if *db == "" || *db == ":memory:" || *live < 0 || *expired < 0 {
		fmt.Fprintln(os.Stderr, "seed: give --db FILE and counts of 0 or more")
		os.Exit(2)
	}
	if err := seed(*db, *live, *expired, *workers); err != nil {
		fmt.Fprintf(os.Stderr, "seed: %v\n", err)
		os.Exit(1)
	}
}

func seed(path string, live, expired, workers int) error {
	store, err := sqlitestore.Open(path)
	if err != nil {
		return err
	}
	now := time.Now()
	rules := greylist.DefaultRules
	rules.Delay = time.Minute
	start := time.Now()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	total := int64(live + expired)
	for range max(workers, 1) {
		wg.Go(func() {
			ctx := context.Background()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				// Expired triplets come first in i, live ones after.
				k := key(i)
				var res greylist.Result
				var err error
				want := greylist.New
				if i < int64(expired) {
					res, err = store.Attempt(ctx, k, rules, now.Add(-40*24*time.Hour))
				} else {
					want = greylist.Passed
					_, err1 := store.Attempt(ctx, k, rules, now.Add(-time.Hour-2*time.Minute))
					res, err = store.Attempt(ctx, k, rules, now.Add(-time.Hour))
					err = errors.Join(err1, err)
				}
				if err != nil || res.Outcome != want {
					once.Do(func() { firstErr = fmt.Errorf("triplet %d: outcome %v, want %v: %v", i, res.Outcome, want, err) })
					return
				}
			}
		})
	}
	wg.Wait()
	if err := store.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("seeded %d live and %d expired triplets in %.1fs\n", live, expired, time.Since(start).Seconds())
	return nil
}

// key is the i-th seeded triplet: 65536 client subnets in 10.0.0.0/8, and
// a sender per pass over them, so that no two keys are the same.
func key(i int64) greylist.Key {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
	return greylist.Key{
		Client:    greylist.DefaultKeyer.Client(a),
		Sender:    fmt.Sprintf("list-%d@seed.example", i>>16),
		Recipient: fmt.Sprintf("user%d@example.org", i%997),
	}
}
