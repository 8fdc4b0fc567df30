package policyd

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/internal/loglevel"
)

// conn is one client connection; its requests are answered in order, one
// at a time, as the protocol has it.
type conn struct {
	srv       *Server
	nc        net.Conn
	ctx       context.Context
	cancel    context.CancelFunc
	stopClose func() bool

	// mu orders the idle/busy switch against Shutdown's kick, so that an
	// idle connection is always woken and a busy one never cut short.
	mu     sync.Mutex
	idle   bool
	kicked bool

	rd  *Reader
	req Request
	msg message
	out []byte

	// The last client_address seen and its parse: a connection usually
	// asks about the same client many times in a row.
	addrText string
	addr     netip.Addr
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{
		srv: s,
		nc:  nc,
		rd:  NewReader(nc, s.cfg.MaxLineLength, s.cfg.MaxAttributes),
		out: make([]byte, 0, 256),
	}
}

func (c *conn) serve() {
	defer func() {
		c.stopClose()
		c.cancel()
		c.nc.Close()
		c.srv.untrack(c)
	}()
	cfg := &c.srv.cfg
	for {
		if !c.setIdle() {
			return
		}
		// The idle timeout bounds only the wait for a request: the
		// decision has the engine's deadline, the answer its own below.
		c.nc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		err := c.rd.Peek()
		kicked := c.setBusy()
		if err != nil {
			c.logIdleError(err, kicked)
			return
		}
		if kicked {
			// Shutdown tried to wake us just as a request arrived: serve
			// it under a fresh deadline, then close.
			c.nc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		}
		if err := c.rd.Read(&c.req); err != nil {
			c.logReadError(err)
			return
		}
		c.out = c.answer(c.out[:0])
		if c.srv.log.Enabled(c.ctx, loglevel.Trace) {
			c.traceExchange()
		}
		// A peer that stops reading cannot hold the connection either.
		c.nc.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		if _, err := c.nc.Write(c.out); err != nil {
			if c.ctx.Err() == nil { // not the hard stop closing the socket
				c.srv.log.Warn("write failed, the answer is lost", "remote", c.remote(), "err", err)
			}
			return
		}
		if cfg.CloseAfterReply {
			c.lingeringClose()
			return
		}
	}
}

// traceExchange logs a request and its answer (-vvv).
func (c *conn) traceExchange() {
	r := &c.req
	c.srv.log.Log(c.ctx, loglevel.Trace, "policy exchange", "remote", c.remote(), "request", r.Type, "protocol_state", r.ProtocolState,
		"client_address", r.ClientAddress, "client_name", r.ClientName, "helo_name", r.HeloName, "sender", r.Sender,
		"recipient", r.Recipient, "sasl_username", r.SASLUsername, "instance", r.Instance, "queue_id", r.QueueID,
		"answer", strings.TrimSpace(string(c.out)))
}

// lingeringClose ends the connection with a FIN and waits briefly for the
// peer's, throwing away what else it sent. Closing a socket with unread
// input makes the kernel answer with a reset, which can reach the peer
// before it read the answer: Exim would then take the fail string of its
// ${readsocket} instead.
func (c *conn) lingeringClose() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(c.nc, 64<<10))
}

// setIdle marks the connection as waiting for a request. It reports false
// when the server is shutting down and the connection should close.
func (c *conn) setIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv.listeners.Closed() {
		return false
	}
	// A request already in the buffer has arrived: it is not idle time.
	c.idle = !c.rd.Buffered()
	return true
}

// setBusy marks the connection as serving a request and reports whether
// Shutdown kicked it meanwhile.
func (c *conn) setBusy() (kicked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = false
	return c.kicked
}

// kick wakes an idle connection so that it closes.
func (c *conn) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle {
		c.kicked = true
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// logIdleError logs why the wait for a request ended without one.
func (c *conn) logIdleError(err error, kicked bool) {
	switch {
	case errors.Is(err, io.EOF), kicked, c.ctx.Err() != nil:
		// The client closed between requests (the normal end), or
		// Shutdown woke us, or the hard stop closed the socket.
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.srv.log.Debug("idle timeout, closing", "remote", c.remote())
	default:
		c.srv.log.Debug("read failed, closing", "remote", c.remote(), "err", err)
	}
}

// logReadError logs why a request that had started could not be read.
func (c *conn) logReadError(err error) {
	log := c.srv.log
	switch {
	case errors.Is(err, io.EOF), c.ctx.Err() != nil:
		// Only blank lines before the client closed; or the hard stop.
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Warn("request incomplete after the idle timeout, closing", "remote", c.remote(), "timeout", c.srv.cfg.IdleTimeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
		log.Warn("client closed inside a request", "remote", c.remote())
	default:
		log.Warn("bad request, closing", "remote", c.remote(), "err", err)
	}
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "unix"
}

var passVerdict = engine.Verdict{Action: engine.Pass}

// answer judges the request just read and appends the answer to dst.
func (c *conn) answer(dst []byte) []byte {
	r := &c.req
	c.msg.start(r.Instance)
	// A request without a type is taken as an access policy request: a
	// hand-written Exim request may forget it.
	if r.Type != "" && r.Type != "smtpd_access_policy" {
		c.srv.log.Warn("unknown request type, answering DUNNO", "remote", c.remote(), "request", r.Type)
		return appendReply(dst, &passVerdict, nil)
	}
	switch r.ProtocolState {
	case "RCPT":
	case "":
		// postgrey never looked at the state, and Exim ACLs written for
		// it often leave it out: a request without one is a recipient's.
	case "DATA":
		// The last moment a header can still be prepended.
		return c.appendPass(dst, &passVerdict)
	default:
		return appendReply(dst, &passVerdict, nil)
	}
	req, missing := c.engineRequest()
	if missing != "" {
		c.srv.log.Warn("request lacks "+missing+", answering DUNNO",
			"remote", c.remote(), "client_address", r.ClientAddress, "recipient", r.Recipient, "instance", r.Instance)
		return appendReply(dst, &passVerdict, nil)
	}
	v := c.srv.cfg.Decider.Decide(c.ctx, req)
	if v.Action != engine.Pass {
		return appendReply(dst, &v, nil)
	}
	// Only a passing recipient's headers go on the message: they say why
	// it passed, and a deferred recipient is not delivered with it.
	c.msg.queue(v.Headers)
	return c.appendPass(dst, &v)
}

// appendPass answers a pass with the next header the message is owed.
func (c *conn) appendPass(dst []byte, v *engine.Verdict) []byte {
	if h, ok := c.msg.next(); ok {
		return appendReply(dst, v, &h)
	}
	return appendReply(dst, v, nil)
}

// engineRequest builds the engine's request, or names the attribute that
// is missing for it.
func (c *conn) engineRequest() (*engine.Request, string) {
	r := &c.req
	if r.ClientAddress != c.addrText || !c.addr.IsValid() {
		a, err := netip.ParseAddr(r.ClientAddress)
		if err != nil {
			return nil, "a valid client_address"
		}
		c.addrText, c.addr = r.ClientAddress, a.Unmap()
	}
	if r.Recipient == "" {
		return nil, "recipient"
	}
	name := r.ClientName
	if name == "unknown" {
		name = ""
	}
	return &engine.Request{
		ClientAddr: c.addr,
		ClientName: name,
		Helo:       r.HeloName,
		Sender:     r.Sender,
		Recipient:  r.Recipient,
		AuthUser:   r.SASLUsername,
		QueueID:    r.QueueID,
		TLS: engine.TLSClient{Verified: r.CCertSubject != "", Subject: r.CCertSubject,
			Issuer: r.CCertIssuer, Fingerprint: r.CCertFingerprint},
	}, ""
}
