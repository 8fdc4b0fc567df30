// Package listener guards a front end's net.Listener against clients that
// would starve or kill it: it caps the connections open at once and rides
// out accept errors (EMFILE, ENFILE, ECONNABORTED) instead of returning
// them, since a server whose Serve returns on the first accept error (as
// go-milter's does) would exit and leave the MTA with its default action.
// A Set holds the listeners a front end serves, for its shutdown to close.
package listener

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff bounds of the wait after a failed accept: short enough that a
// descriptor freed by a closing client is used at once, long enough not to
// spin on a process that is out of them.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Limited is a net.Listener that keeps at most Max connections open and
// retries failed accepts. Over the limit a new connection is accepted and
// closed at once rather than left waiting in the kernel's backlog: the MTA
// then sees the end of the connection straight away and applies its
// default action for this one session (Postfix: milter_default_action,
// smtpd_policy_service_default_action; with tempfail the SMTP client
// retries later), instead of an smtpd process hanging for
// milter_connect_timeout or milter_command_timeout (30 s each by default)
// and then giving that same answer, which would itself tie up more of the
// MTA's processes while the overload lasts.
type Limited struct {
	net.Listener
	max  int
	log  *slog.Logger
	name string

	open     atomic.Int64
	refused  atomic.Uint64
	failures atomic.Uint64
	full     atomic.Bool // an over-limit episode is under way (logged once)
	failing  atomic.Bool // an accept-error episode is under way (logged once)
	closed   chan struct{}
	closeOne sync.Once
}

// New wraps ln. max < 1 means no limit; name says which front end in
// metrics, and log should say it too (greymilter gives component=NAME).
func New(ln net.Listener, max int, log *slog.Logger, name string) *Limited {
	if log == nil {
		log = slog.Default()
	}
	return &Limited{Listener: ln, max: max, log: log, name: name, closed: make(chan struct{})}
}

// Open is the number of connections open now.
func (l *Limited) Open() int { return int(l.open.Load()) }

// Refused is the number of connections closed because the limit was reached.
func (l *Limited) Refused() uint64 { return l.refused.Load() }

// AcceptErrors is the number of accepts that failed (and were retried).
func (l *Limited) AcceptErrors() uint64 { return l.failures.Load() }

// Name is the front end's name given to New.
func (l *Limited) Name() string { return l.name }

// Accept returns the next connection within the limit. It returns an error
// only once the listener is closed.
func (l *Limited) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			select {
			case <-l.closed:
				return nil, net.ErrClosed
			default:
			}
			l.failures.Add(1)
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if !l.failing.Swap(true) {
				l.log.Error("accept failed; retrying with back-off", "err", err)
			}
			select {
			case <-time.After(backoff):
			case <-l.closed:
				return nil, net.ErrClosed
			}
			continue
		}
		if l.failing.Swap(false) {
			l.log.Info("accepting connections again")
		}
		backoff = 0
		if l.max > 0 && l.open.Load() >= int64(l.max) {
			// Counted before it is closed: whoever sees the close sees it counted.
			l.refused.Add(1)
			c.Close()
			if !l.full.Swap(true) {
				l.log.Warn("connection limit reached; closing new connections until some end", "max_connections", l.max)
			}
			continue
		}
		if l.full.Swap(false) {
			l.log.Info("below the connection limit again", "max_connections", l.max, "refused_total", l.refused.Load())
		}
		l.open.Add(1)
		return &conn{Conn: c, l: l}, nil
	}
}

// Close closes the listener and wakes an Accept waiting out a back-off.
func (l *Limited) Close() error {
	l.closeOne.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// conn gives its slot back once, however many times it is closed.
type conn struct {
	net.Conn
	l    *Limited
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// CloseWrite half-closes the connection when the underlying one can (TCP
// and unix sockets), as a policy server's lingering close needs.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
