package policyd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/internal/listener"
)

// Decider judges one recipient. *engine.Engine is one.
type Decider interface {
	Decide(ctx context.Context, req *engine.Request) engine.Verdict
}

// Defaults for Config.
const (
	// DefaultIdleTimeout is above Postfix's smtpd_policy_service_max_idle
	// (300s), so that Postfix, not the server, closes the connections it
	// caches: a connection closed under Postfix costs its SMTP client a
	// retry delay and a warning in the mail log. The timeout only reaps
	// peers that went away and requests left half sent.
	DefaultIdleTimeout = 330 * time.Second
	// DefaultWriteTimeout bounds the write of one answer, a few hundred
	// bytes that fit in any socket buffer: only a peer that stopped reading
	// makes it wait.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxLineLength bounds one name=value line. Postfix limits SMTP
	// command lines to 2048 bytes (line_length_limit), so no address comes
	// near it; certificate subjects are the longest values it sends.
	DefaultMaxLineLength = 8192
	// DefaultMaxAttributes bounds one request. Postfix 3.7 sends 29.
	DefaultMaxAttributes = 128
)

// Config configures a Server.
type Config struct {
	Decider Decider
	Logger  *slog.Logger // default slog.Default()
	// IdleTimeout closes a connection when a whole request has not arrived
	// this long after the previous answer (or the connect). It counts only
	// the wait for a request: the decision is bounded by the Decider's own
	// deadline, the answer by WriteTimeout.
	IdleTimeout time.Duration
	// WriteTimeout bounds the write of one answer.
	WriteTimeout time.Duration
	// CloseAfterReply closes the connection after each answer, for Exim's
	// ${readsocket} (postgrey's --exim, bley's exim_workaround).
	CloseAfterReply bool
	MaxLineLength   int
	MaxAttributes   int
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("policyd: server closed")

// Server answers policy requests on any number of listeners.
type Server struct {
	cfg Config
	log *slog.Logger

	listeners listener.Set
	mu        sync.Mutex
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // one per connection
}

// New returns a server; zero fields of cfg take their defaults.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = DefaultMaxLineLength
	}
	if cfg.MaxAttributes <= 0 {
		cfg.MaxAttributes = DefaultMaxAttributes
	}
	return &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		conns: make(map[*conn]struct{}),
	}
}

// Serve accepts connections on ln until Shutdown (it then returns
// ErrServerClosed) or until ctx is cancelled. Cancelling ctx is the hard
// stop: the listener and every connection it accepted are closed at once
// and decisions in flight see their context cancelled.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.listeners.Add(ln) {
		return ErrServerClosed
	}
	defer s.listeners.Remove(ln)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			switch {
			case s.listeners.Closed():
				return ErrServerClosed
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, net.ErrClosed):
				return err
			}
			// Out of file descriptors or an aborted handshake: wait a
			// little rather than spin, then go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		if c := s.track(ctx, nc); c != nil {
			go c.serve()
		}
	}
}

// track registers a new connection, or closes it when shutting down.
func (s *Server) track(ctx context.Context, nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners.Closed() {
		nc.Close()
		return nil
	}
	c := newConn(s, nc)
	c.ctx, c.cancel = context.WithCancel(ctx)
	// The hard stop must also wake a connection blocked in a read.
	c.stopClose = context.AfterFunc(c.ctx, func() { nc.Close() })
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops the server gracefully: it stops accepting, closes idle
// connections and lets each busy one finish the request it is on, answer
// it and close. When ctx ends first, the remaining connections are closed
// and their decisions cancelled, and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	// Closed before s.mu is taken: a connection tracked after the
	// snapshot below sees the set closed.
	s.listeners.Close()
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.kick()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.cancel()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}
