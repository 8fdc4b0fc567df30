package dnsbl

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

// downFor is how long a server that timed out is tried only after the
// others, so that a dead server does not cost every other lookup a wait.
const downFor = 30 * time.Second

type upstream struct {
	addr      string
	downUntil atomic.Int64 // Unix nanoseconds; 0 when healthy
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

// order returns the servers to try for one query: round-robin from the
// next position, servers that recently timed out moved to the end.
func (r *Resolver) order() []*upstream {
	n := len(r.servers)
	start := int(r.next.Add(1)-1) % n
	now := r.clock.Now().UnixNano()
	out := make([]*upstream, 0, n)
	var down []*upstream
	for i := range n {
		s := r.servers[(start+i)%n]
		if s.downUntil.Load() > now {
			down = append(down, s)
			continue
		}
		out = append(out, s)
	}
	return append(out, down...)
}

// exchange asks the upstream servers in turn until one answers NOERROR or
// NXDOMAIN. The time left is shared evenly among the attempts left, and
// there are at least two, so that one lost UDP packet to a single server is
// retried.
func (r *Resolver) exchange(ctx context.Context, k cacheKey) (*dns.Msg, error) {
	servers := r.order()
	attempts := max(len(servers), 2)
	var errs attemptErrors
	for i := range attempts {
		s := servers[i%len(servers)]
		var per time.Duration
		if dl, ok := ctx.Deadline(); ok {
			per = time.Until(dl) / time.Duration(attempts-i)
		}
		m, err := r.ask(ctx, s, k, per)
		if err == nil {
			if m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError {
				s.downUntil.Store(0)
				return m, nil
			}
			err = fmt.Errorf("%w: %s from %s", ErrServerFailure, dns.RcodeToString[m.Rcode], s.addr)
		} else {
			if err := expired(ctx); err != nil {
				return nil, append(errs, fmt.Errorf("stopped: %w", err))
			}
			if isTimeout(err) {
				s.downUntil.Store(r.clock.Now().Add(downFor).UnixNano())
				err = fmt.Errorf("%s: no answer in %v: %w", s.addr, per.Round(time.Millisecond), err)
			} else {
				err = fmt.Errorf("%s: %w", s.addr, err)
			}
		}
		errs = append(errs, err)
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
