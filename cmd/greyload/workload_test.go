package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

var testShape = Shape{Seed: 7, Subnets: 40, HostsPerSubnet: 5, IPv6Share: 0.25, Senders: 50, Recipients: 30, MaxRcpts: 3, NewShare: 0.5}

// The triplets of first-time transactions must be new to the server, whose
// keys group clients by subnet and fold senders: a workload that repeats a
// key would make a correct server look wrong.
func TestNewTripletsAreDistinctKeys(t *testing.T) {
	s := NewScheduler(testShape, time.Second, 1<<30)
	s.SetWarmup(true)
	seen := map[greylist.Key]uint64{}
	v4, v6 := 0, 0
	for range 2000 {
		txn, err := s.Next(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if txn.Retry || len(txn.Rcpts) < 1 || len(txn.Rcpts) > testShape.MaxRcpts {
			t.Fatalf("warm-up transaction %+v: want first-time with 1 to %d recipients", txn, testShape.MaxRcpts)
		}
		if txn.Client.Is4() {
			v4++
		} else {
			v6++
		}
		for _, r := range txn.Rcpts {
			k := greylist.DefaultKeyer.Key(txn.Client, txn.Sender, r)
			if id, dup := seen[k]; dup {
				t.Fatalf("transactions %d and %d share the triplet %+v", id, txn.ID, k)
			}
			seen[k] = txn.ID
		}
	}
	if v4 == 0 || v6 == 0 {
		t.Errorf("%d IPv4 and %d IPv6 clients: want both", v4, v6)
	}
}

func TestRetryKeepsTheTriplet(t *testing.T) {
	s := NewScheduler(Shape{Seed: 1, Subnets: 10, HostsPerSubnet: 3, IPv6Share: 0.5, Senders: 10, Recipients: 10, MaxRcpts: 2, NewShare: 0}, time.Second, 100)
	t0 := time.Unix(1000, 0)
	first, err := s.Next(t0)
	if err != nil || first.Retry {
		t.Fatalf("first transaction: %+v, %v; want a first-time one", first, err)
	}
	s.Answered(first, t0)
	// Before the wait is over a retry slot gets a new transaction.
	early, _ := s.Next(t0.Add(999 * time.Millisecond))
	if early.Retry {
		t.Fatalf("retry issued before the wait was over")
	}
	retry, _ := s.Next(t0.Add(time.Second))
	if !retry.Retry {
		t.Fatalf("no retry once the wait was over: %+v", retry)
	}
	if retry.Client == first.Client {
		t.Errorf("retry from the same address %v: want a neighbour", retry.Client)
	}
	for i, r := range retry.Rcpts {
		a := greylist.DefaultKeyer.Key(first.Client, first.Sender, first.Rcpts[i])
		b := greylist.DefaultKeyer.Key(retry.Client, retry.Sender, r)
		if a != b {
			t.Errorf("retry key %+v, first key %+v: want the same", b, a)
		}
	}
	if got := s.Fallbacks(); got != 2 { // the first slot and the early one
		t.Errorf("Fallbacks() = %d, want 2", got)
	}
}

// The same seed gives the same first-time transactions.
func TestSeedDeterminesTheStream(t *testing.T) {
	stream := func(seed uint64) string {
		sh := testShape
		sh.Seed = seed
		s := NewScheduler(sh, time.Second, 1<<30)
		s.SetWarmup(true)
		out := ""
		for range 50 {
			txn, _ := s.Next(time.Now())
			out += fmt.Sprintln(txn.Client, txn.Sender, txn.Rcpts)
		}
		return out
	}
	if a, b := stream(3), stream(3); a != b {
		t.Error("two streams of seed 3 differ")
	}
	if stream(3) == stream(4) {
		t.Error("seeds 3 and 4 give the same stream")
	}
}

func TestCountBoundsTheMeasuredPhase(t *testing.T) {
	s := NewScheduler(testShape, time.Second, 10)
	n := 0
	for range 100 {
		txn, err := s.Next(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if txn == nil {
			break
		}
		n += len(txn.Rcpts)
	}
	if n < 10 || n >= 10+testShape.MaxRcpts {
		t.Errorf("%d recipients issued for a count of 10", n)
	}
}

func TestShapeCheck(t *testing.T) {
	bad := []Shape{
		{Subnets: 0, HostsPerSubnet: 1, Senders: 1, Recipients: 1, MaxRcpts: 1},
		{Subnets: 600, HostsPerSubnet: 1, Senders: 1, Recipients: 1, MaxRcpts: 1}, // too many IPv4 /24s
		{Subnets: 1, HostsPerSubnet: 1, Senders: 1, Recipients: 1, MaxRcpts: 2},
		{Subnets: 1, HostsPerSubnet: 1, Senders: 1, Recipients: 1, MaxRcpts: 1, NewShare: 1.5},
	}
	for _, sh := range bad {
		if err := sh.check(); err == nil {
			t.Errorf("%+v: accepted", sh)
		}
	}
	if err := testShape.check(); err != nil {
		t.Errorf("testShape: %v", err)
	}
}
