package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// The addresses a workload is made of come from ranges reserved for
// documentation and benchmarks, so that a greylister under test never
// confuses them with real peers: 198.18.0.0/15 (RFC 2544, 512 /24s) and
// 2001:2::/48 (RFC 5180, one /64 per subnet index). They only travel inside
// the protocols; the connections themselves stay on loopback.
var (
	ipv4Base = netip.MustParseAddr("198.18.0.0")
	ipv6Base = netip.MustParseAddr("2001:2::")
)

const maxIPv4Subnets = 512

// Shape is what a workload is made of. Two runs with the same Shape send
// the same sequence of first-time transactions.
type Shape struct {
	Seed           uint64
	Subnets        int     // client subnets (/24 for IPv4, /64 for IPv6)
	HostsPerSubnet int     // client addresses in each subnet
	IPv6Share      float64 // share of the subnets that are IPv6
	Senders        int
	Recipients     int
	MaxRcpts       int     // each transaction has 1..MaxRcpts recipients
	NewShare       float64 // share of transactions with first-time triplets
}

func (s Shape) check() error {
	if s.Subnets < 1 || s.HostsPerSubnet < 1 || s.HostsPerSubnet > 250 {
		return errors.New("want --subnets of 1 or more and --hosts-per-subnet from 1 to 250")
	}
	if s.IPv6Share < 0 || s.IPv6Share > 1 || s.NewShare < 0 || s.NewShare > 1 {
		return errors.New("want --ipv6-share and --new-share from 0 to 1")
	}
	if v4 := s.Subnets - s.ipv6Subnets(); v4 > maxIPv4Subnets {
		return fmt.Errorf("%d IPv4 subnets: the benchmark range 198.18.0.0/15 holds %d", v4, maxIPv4Subnets)
	}
	if s.Senders < 1 || s.Recipients < s.MaxRcpts || s.MaxRcpts < 1 {
		return errors.New("want --senders of 1 or more, --rcpts of 1 or more and at least --rcpts --recipients")
	}
	if s.Subnets > 1<<16 || s.Senders > 1<<21 || s.Recipients > 1<<21 {
		return errors.New("at most 65536 --subnets, 2097152 --senders and 2097152 --recipients")
	}
	return nil
}

func (s Shape) ipv6Subnets() int { return int(float64(s.Subnets)*s.IPv6Share + 0.5) }

// client returns host h of subnet i. The last ipv6Subnets() subnets are
// IPv6.
func (s Shape) client(i, h int) netip.Addr {
	if v4 := s.Subnets - s.ipv6Subnets(); i >= v4 {
		b := ipv6Base.As16()
		b[6], b[7] = byte((i-v4)>>8), byte(i-v4)
		b[14], b[15] = byte((h+1)>>8), byte(h+1)
		return netip.AddrFrom16(b)
	}
	b := ipv4Base.As4()
	b[1] += byte(i >> 8)
	b[2] = byte(i)
	// Spread the hosts over the /24, as the servers of one provider are.
	b[3] = byte(10 + h*37%240)
	return netip.AddrFrom4(b)
}

// Addresses are made of letters only: every greylister folds digits in a
// sender's local part (VERP), and the triplets must stay distinct.
func letters(prefix string, n int) string {
	b := []byte(prefix)
	for {
		b = append(b, byte('a'+n%26))
		n /= 26
		if n == 0 {
			return string(b)
		}
	}
}

func (s Shape) sender(i int) string {
	return letters("s", i) + "@" + letters("d", i%97) + ".example"
}

func (s Shape) recipient(i int) string { return letters("r", i) + "@example.org" }

func (s Shape) helo(subnet int) string { return letters("mx", subnet) + ".example.net" }

// Txn is one SMTP transaction: one client, one sender, its recipients.
type Txn struct {
	ID     uint64
	Subnet int
	Host   int
	Client netip.Addr
	Helo   string
	Sender string
	Rcpts  []string
	// Retry is set for the retry of an earlier deferred transaction: its
	// recipients must pass. Otherwise every triplet is new and must be
	// deferred.
	Retry   bool
	Warmup  bool      // issued during the warm-up
	answer  time.Time // when the first attempt's last answer came
	senderN int
	rcptN   []int
}

// Scheduler hands out transactions to the workers: first-time ones in the
// order the seed gives, and retries of answered ones once the server's
// delay is over.
type Scheduler struct {
	shape Shape
	wait  time.Duration // delay plus margin between an answer and its retry

	mu       sync.Mutex
	gen      *rand.Rand // first-time transactions
	mix      *rand.Rand // new or retry, per slot
	seen     map[uint64]struct{}
	pending  []*Txn // answered first-time transactions, oldest first
	nextID   uint64
	warmup   bool
	issued   int // recipients issued in the measured phase
	warmed   int // recipients issued in the warm-up
	limit    int
	stopped  bool
	fallback int // retry slots given a new transaction: no retry was due
}

// NewScheduler returns a scheduler that issues about limit recipients in
// the measured phase; retries come wait after the first attempt's answer.
func NewScheduler(shape Shape, wait time.Duration, limit int) *Scheduler {
	return &Scheduler{
		shape: shape,
		wait:  wait,
		gen:   rand.New(rand.NewPCG(shape.Seed, 0x67726579)),
		mix:   rand.New(rand.NewPCG(shape.Seed, 0x6d6978)),
		seen:  make(map[uint64]struct{}),
		limit: limit,
	}
}

// SetWarmup switches the warm-up phase on or off. During the warm-up only
// first-time transactions are issued, so that retries are due when the
// measured phase starts.
func (s *Scheduler) SetWarmup(on bool) {
	s.mu.Lock()
	s.warmup = on
	s.mu.Unlock()
}

// Stop makes Next return nil from now on.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// Fallbacks returns how many retry slots got a first-time transaction.
func (s *Scheduler) Fallbacks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fallback
}

// errWarmupFull says that the warm-up issued as many recipients as the
// measured phase will: enough retries are waiting, and the worker waits for
// the measured phase.
var errWarmupFull = errors.New("warm-up full")

// Next returns the next transaction, or nil when the run is over.
func (s *Scheduler) Next(now time.Time) (*Txn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || (!s.warmup && s.issued >= s.limit) {
		return nil, nil
	}
	if s.warmup && s.warmed >= s.limit {
		return nil, errWarmupFull
	}
	var t *Txn
	if !s.warmup && s.mix.Float64() >= s.shape.NewShare {
		if len(s.pending) > 0 && !s.pending[0].answer.Add(s.wait).After(now) {
			t = s.retryOf(s.pending[0])
			s.pending[0] = nil
			s.pending = s.pending[1:]
		} else {
			s.fallback++
		}
	}
	if t == nil {
		var err error
		if t, err = s.newTxn(); err != nil {
			return nil, err
		}
	}
	t.Warmup = s.warmup
	if s.warmup {
		s.warmed += len(t.Rcpts)
	} else {
		s.issued += len(t.Rcpts)
	}
	return t, nil
}

// Answered tells the scheduler that a first-time transaction was deferred
// at when; its retry becomes due after the wait.
func (s *Scheduler) Answered(t *Txn, when time.Time) {
	if t.Retry {
		return
	}
	t.answer = when
	s.mu.Lock()
	s.pending = append(s.pending, t)
	s.mu.Unlock()
}

// maxDraws bounds the search for a triplet not used before.
const maxDraws = 1000

func (s *Scheduler) newTxn() (*Txn, error) {
	sh := s.shape
	n := 1 + s.gen.IntN(sh.MaxRcpts)
	for range maxDraws {
		subnet, sender := s.gen.IntN(sh.Subnets), s.gen.IntN(sh.Senders)
		rcpts := make([]int, 0, n)
	draw:
		for len(rcpts) < n {
			r := s.gen.IntN(sh.Recipients)
			for _, have := range rcpts {
				if have == r {
					continue draw
				}
			}
			rcpts = append(rcpts, r)
		}
		if !s.claim(subnet, sender, rcpts) {
			continue
		}
		host := s.gen.IntN(sh.HostsPerSubnet)
		t := &Txn{
			ID:      s.nextID,
			Subnet:  subnet,
			Host:    host,
			Client:  sh.client(subnet, host),
			Helo:    sh.helo(subnet),
			Sender:  sh.sender(sender),
			senderN: sender,
			rcptN:   rcpts,
		}
		for _, r := range rcpts {
			t.Rcpts = append(t.Rcpts, sh.recipient(r))
		}
		s.nextID++
		return t, nil
	}
	return nil, fmt.Errorf("no unused triplet after %d draws: raise --senders or --recipients", maxDraws)
}

// claim marks the triplets of a transaction used, unless one already is.
func (s *Scheduler) claim(subnet, sender int, rcpts []int) bool {
	key := func(r int) uint64 { return uint64(subnet)<<42 | uint64(sender)<<21 | uint64(r) }
	for _, r := range rcpts {
		if _, ok := s.seen[key(r)]; ok {
			return false
		}
	}
	for _, r := range rcpts {
		s.seen[key(r)] = struct{}{}
	}
	return true
}

// retryOf is the retry of t. It comes from the next address of the same
// subnet, as a provider's outbound pool does: the triplet is keyed by
// subnet, so it must pass all the same.
func (s *Scheduler) retryOf(t *Txn) *Txn {
	host := (t.Host + 1) % s.shape.HostsPerSubnet
	r := *t
	r.ID = s.nextID
	s.nextID++
	r.Host = host
	r.Client = s.shape.client(t.Subnet, host)
	r.Retry = true
	return &r
}
