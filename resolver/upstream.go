package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size we advertise: the DNS flag day 2020
// value, small enough to avoid IP fragmentation.
const ednsSize = 1232

// The circuit breaker of each upstream server.
const (
	// BreakAfter consecutive timeouts, with no answer from the server for
	// the resolver's timeout, mark a server down: lookups are no longer
	// sent to it (they go to another server, or fail at once).
	BreakAfter = 5
	// ProbeEvery is how often, while a server is down, one query is sent
	// to it in the background to tell whether it is back.
	ProbeEvery = 3 * time.Second
	// minEvidence is the shortest wait whose timeout counts against a
	// server: an attempt given less (a lookup near the end of a decision's
	// budget) proves nothing about it.
	minEvidence = 100 * time.Millisecond
)

// upstream is one recursive server and its circuit breaker.
type upstream struct {
	addr     string
	timeouts atomic.Int32 // consecutive timeouts
	// lastAnswer is when the server last answered, in Unix nanoseconds of
	// the wall clock (compared with real waits, not the resolver's Clock).
	lastAnswer atomic.Int64
	down       atomic.Bool
	downSince  atomic.Int64 // Unix nanoseconds, while down
	nextProbe  atomic.Int64 // Unix nanoseconds, while down
}

// UpstreamState is the breaker state of one upstream server.
type UpstreamState struct {
	Addr string
	Up   bool
}

// Upstreams returns the state of the upstream servers in configuration
// order.
func (r *Resolver) Upstreams() []UpstreamState {
	out := make([]UpstreamState, len(r.servers))
	for i, s := range r.servers {
		out[i] = UpstreamState{Addr: s.addr, Up: !s.down.Load()}
	}
	return out
}

// timedOut counts a timeout of s, and marks s down at the BreakAfter-th in
// a row; the log says so once per episode. A server that answered other
// queries within the resolver's timeout is not down: a few names that time
// out at a healthy recursive server (their own servers dead) are no reason
// to stop asking it the others; their failures are remembered instead.
func (r *Resolver) timedOut(s *upstream) {
	n := s.timeouts.Add(1)
	if n < BreakAfter || time.Since(time.Unix(0, s.lastAnswer.Load())) < r.timeout || !s.down.CompareAndSwap(false, true) {
		return
	}
	now := r.clock.Now()
	s.downSince.Store(now.UnixNano())
	s.nextProbe.Store(now.Add(ProbeEvery).UnixNano())
	r.log.Warn("dns upstream down: lookups to it abstain until a probe answers", "server", s.addr, "timeouts", n, "probe_every", ProbeEvery.String())
}

// answered resets s's breaker: s answers.
func (r *Resolver) answered(s *upstream) {
	s.lastAnswer.Store(time.Now().UnixNano())
	s.timeouts.Store(0)
	if s.down.Load() && s.down.CompareAndSwap(true, false) {
		down := r.clock.Now().Sub(time.Unix(0, s.downSince.Load()))
		r.log.Info("dns upstream back", "server", s.addr, "down_for", down.Round(time.Millisecond).String())
	}
}

// probeDue claims the probe of down server s when one is due: true for
// one caller per ProbeEvery.
func (r *Resolver) probeDue(s *upstream) bool {
	now := r.clock.Now().UnixNano()
	next := s.nextProbe.Load()
	return now >= next && s.nextProbe.CompareAndSwap(next, r.clock.Now().Add(ProbeEvery).UnixNano())
}

// probe asks down server s for k in the background, with the resolver's
// full timeout and on no decision's time. Any answer, even an error code,
// shows that s is back; a usable one is cached for the lookups to come.
func (r *Resolver) probe(s *upstream, k cacheKey) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	m, err := r.ask(ctx, s, k, 0)
	if err != nil {
		return
	}
	r.answered(s)
	if m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError {
		r.store(k, &Answer{Rcode: m.Rcode, Records: m.Answer}, m)
	}
}

// ReadResolvConf returns the nameservers of a resolv.conf file as
// "HOST:PORT".
func ReadResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dnsbl: %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("dnsbl: %s: no nameserver", path)
	}
	out := make([]string, len(cc.Servers))
	for i, s := range cc.Servers {
		out[i] = net.JoinHostPort(s, cc.Port)
	}
	return out, nil
}

// normalizeServer accepts "HOST:PORT", "[V6]:PORT", or a bare address
// (port 53).
func normalizeServer(s string) (string, error) {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if net.ParseIP(h) == nil {
		return "", fmt.Errorf("dnsbl: DNS server %q: want HOST:PORT or an IP address", s)
	}
	return net.JoinHostPort(h, "53"), nil
}

// order returns the servers to try for k: those up, round-robin from the
// next position, those whose last query timed out after the others, so
// that a dying server does not cost every lookup a wait before its breaker
// opens. A down server whose probe is due is probed with k in the
// background.
func (r *Resolver) order(k cacheKey) []*upstream {
	n := len(r.servers)
	start := int(r.next.Add(1)-1) % n
	out := make([]*upstream, 0, n)
	var suspect []*upstream
	for i := range n {
		s := r.servers[(start+i)%n]
		switch {
		case s.down.Load():
			if r.probeDue(s) {
				go r.probe(s, k)
			}
		case s.timeouts.Load() > 0:
			suspect = append(suspect, s)
		default:
			out = append(out, s)
		}
	}
	return append(out, suspect...)
}

// exchange asks the upstream servers that are up in turn until one answers
// NOERROR or NXDOMAIN. The time left is shared evenly among the attempts
// left, and there are at least two, so that one lost UDP packet to a single
// server is retried. With every server down it fails at once
// (ErrUpstreamDown).
func (r *Resolver) exchange(ctx context.Context, k cacheKey) (*dns.Msg, error) {
	servers := r.order(k)
	if len(servers) == 0 {
		return nil, ErrUpstreamDown
	}
	attempts := max(len(servers), 2)
	var errs attemptErrors
	for i := range attempts {
		s := servers[i%len(servers)]
		var per time.Duration
		if dl, ok := ctx.Deadline(); ok {
			per = time.Until(dl) / time.Duration(attempts-i)
		}
		start := time.Now()
		m, err := r.ask(ctx, s, k, per)
		if err == nil {
			r.answered(s)
			if m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError {
				return m, nil
			}
			errs = append(errs, fmt.Errorf("%w: %s from %s", ErrServerFailure, dns.RcodeToString[m.Rcode], s.addr))
			continue
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			// Every caller gave up: nothing is known of the server.
			return nil, append(errs, fmt.Errorf("stopped: %w", ctx.Err()))
		}
		if IsTimeout(err) {
			waited := time.Since(start)
			if waited >= minEvidence {
				r.timedOut(s)
			}
			err = fmt.Errorf("%s: no answer in %v: %w", s.addr, waited.Round(time.Millisecond), err)
		} else {
			err = fmt.Errorf("%s: %w", s.addr, err)
		}
		errs = append(errs, err)
		if expired(ctx) != nil {
			return nil, errs
		}
	}
	return nil, errs
}

// attemptErrors are the failures of the attempts of one query, on one
// line for the log; errors.Is and errors.As see each of them.
type attemptErrors []error

func (e attemptErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e attemptErrors) Unwrap() []error { return e }

// ask sends one query to s over UDP, and again over TCP if the answer is
// truncated, within per (no bound of its own when per is 0).
func (r *Resolver) ask(ctx context.Context, s *upstream, k cacheKey, per time.Duration) (*dns.Msg, error) {
	if per > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, per)
		defer cancel()
	}
	q := new(dns.Msg)
	q.SetQuestion(k.name, k.qtype)
	q.SetEdns0(ednsSize, false)
	r.stats.queries.Add(1)
	m, err := roundTrip(ctx, "udp", s.addr, q)
	if err != nil || !m.Truncated {
		return m, err
	}
	r.stats.queries.Add(1)
	return roundTrip(ctx, "tcp", s.addr, q)
}

// roundTrip sends q to addr and reads the answer, until ctx is done:
// unlike dns.Client, it stops waiting on cancellation, not only at the
// deadline. Over UDP, packets that do not answer q (late answers to
// earlier queries, spoofing attempts) are skipped.
func roundTrip(ctx context.Context, network, addr string, q *dns.Msg) (*dns.Msg, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: c, UDPSize: ednsSize}
	defer co.Close()
	if dl, ok := ctx.Deadline(); ok {
		co.SetDeadline(dl) //nolint:errcheck // a fresh socket does not refuse a deadline
	}
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck
	defer stop()
	if err := co.WriteMsg(q); err != nil {
		return nil, ctxErr(ctx, err)
	}
	for {
		m, err := co.ReadMsg()
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		if answers(q, m) {
			return m, nil
		}
		if network != "udp" {
			return nil, fmt.Errorf("answer from %s does not match the query", addr)
		}
	}
}

func answers(q, m *dns.Msg) bool {
	if m.Id != q.Id || !m.Response {
		return false
	}
	if len(m.Question) == 0 { // some servers drop it from error answers
		return m.Rcode != dns.RcodeSuccess
	}
	mq, qq := m.Question[0], q.Question[0]
	return mq.Qtype == qq.Qtype && mq.Qclass == qq.Qclass && strings.EqualFold(mq.Name, qq.Name)
}

// expired returns the context's error, or context.DeadlineExceeded when the
// deadline has passed but the context's timer has not fired yet (a socket
// deadline set to the same instant can fire first).
func expired(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// ctxErr reports the context's error rather than the socket's when the
// context ended the wait.
func ctxErr(ctx context.Context, err error) error {
	if cerr := expired(ctx); cerr != nil {
		return cerr
	}
	return err
}

// IsTimeout reports whether err is a lookup that ran out of time (the
// caller's deadline or a socket's), as opposed to a failure answer.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
