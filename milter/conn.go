package milter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"
)

// Limits of one MTA connection. go-milter reads with no deadline and
// allocates a packet's declared length (up to 1 MiB) before reading it, so
// they are enforced under it, on the connection it reads from.
type Limits struct {
	// IdleTimeout is the longest wait for the next command between SMTP
	// commands. Postfix waits up to smtpd_timeout (300 s) for its client
	// between commands, so the default stays above it.
	IdleTimeout time.Duration
	// MessageTimeout is the longest wait after a RCPT or DATA command: the
	// MTA is then receiving the message body, which greymilter does not
	// ask for, and only the end of the message comes next. libmilter
	// allows 7210 s for any command; an hour covers a large message from
	// a slow client.
	MessageTimeout time.Duration
	// PacketTimeout bounds the rest of a packet once its first byte came:
	// an MTA writes a whole packet at once.
	PacketTimeout time.Duration
	// MaxPacket is the largest packet accepted (length field, i.e. command
	// byte and data). What greymilter negotiates (no headers, no body)
	// comes in packets of a few KB: macros, a HELO name, an address with
	// ESMTP parameters, each under Postfix's 2048-byte line limit. 64 KiB
	// still admits a whole body chunk from an MTA that ignores the
	// negotiation.
	MaxPacket uint32
}

// DefaultLimits are used where a field of Config.Limits is zero.
var DefaultLimits = Limits{
	IdleTimeout:    330 * time.Second,
	MessageTimeout: time.Hour,
	PacketTimeout:  10 * time.Second,
	MaxPacket:      64 << 10,
}

func (l Limits) withDefaults() Limits {
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultLimits.IdleTimeout
	}
	if l.MessageTimeout <= 0 {
		l.MessageTimeout = DefaultLimits.MessageTimeout
	}
	if l.PacketTimeout <= 0 {
		l.PacketTimeout = DefaultLimits.PacketTimeout
	}
	if l.MaxPacket == 0 {
		l.MaxPacket = DefaultLimits.MaxPacket
	}
	return l
}

// Milter command codes after which the MTA may be silent for a whole
// message transfer (SMFIC_RCPT, SMFIC_DATA).
const (
	cmdRcpt = 'R'
	cmdData = 'T'
)

// LimitListener returns a listener whose connections enforce limits (zero
// fields take DefaultLimits) and read through a buffer; the reasons it
// closes a connection are logged to log. Server.Serve uses it; the
// benchmark's null milter uses it to show what the wrapper costs.
func LimitListener(ln net.Listener, limits Limits, log *slog.Logger) net.Listener {
	if log == nil {
		log = slog.Default()
	}
	return limitedListener{Listener: ln, limits: limits.withDefaults(), log: log}
}

// limitedListener hands out connections that enforce Limits.
type limitedListener struct {
	net.Listener
	limits Limits
	log    *slog.Logger
}

func (l limitedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &limitedConn{Conn: c, r: bufio.NewReaderSize(c, readBuffer), limits: l.limits, log: l.log}, nil
}

// readBuffer holds what one read from the MTA brings: a packet's length
// and body, often the few packets an MTA sends without waiting for a reply
// (macros, then their command). go-milter reads a packet's length and body
// in two calls; through the buffer both come from one read(2).
const readBuffer = 4 << 10

// limitedConn reads the milter packet framing (a 4-byte big-endian length,
// then that many bytes) as go-milter does, so that it can apply the idle
// deadline before a packet, the packet deadline inside one, and refuse an
// oversized length before go-milter allocates it. A refused or timed-out
// connection reads as EOF at a packet boundary, which go-milter ends
// quietly; the reason is logged here.
type limitedConn struct {
	net.Conn
	r      *bufio.Reader // reads c.Conn
	limits Limits
	log    *slog.Logger

	hdr       [4]byte
	hdrLeft   int    // bytes of hdr not yet given to the reader
	remaining uint32 // bytes of the current packet's body still to pass
	lastCmd   byte   // command byte of the last packet
	cmdNext   bool   // the next body byte is a command byte
	err       error  // sticky: once refused, always refused
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.hdrLeft == 0 && c.remaining == 0 {
		if err := c.readHeader(); err != nil {
			c.err = err
			return 0, err
		}
		c.hdrLeft = len(c.hdr)
	}
	if c.hdrLeft > 0 {
		n := copy(p, c.hdr[len(c.hdr)-c.hdrLeft:])
		c.hdrLeft -= n
		return n, nil
	}
	if uint32(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.r.Read(p)
	if n > 0 && c.cmdNext {
		c.lastCmd, c.cmdNext = p[0], false
	}
	c.remaining -= uint32(n)
	return n, err
}

// readHeader reads a whole length field: the first byte under the idle
// deadline, the rest of the packet under the packet deadline. Deadlines
// are set only when the buffer must be refilled: what is buffered came
// already.
func (c *limitedConn) readHeader() error {
	if c.r.Buffered() == 0 {
		idle := c.limits.IdleTimeout
		if c.lastCmd == cmdRcpt || c.lastCmd == cmdData {
			idle = c.limits.MessageTimeout
		}
		c.Conn.SetReadDeadline(time.Now().Add(idle))
		if _, err := c.r.Peek(1); err != nil {
			if isTimeout(err) {
				c.log.Info("closing a connection idle too long", "remote", c.Conn.RemoteAddr().String(), "idle", idle)
				return io.EOF
			}
			return err
		}
	}
	if c.r.Buffered() < len(c.hdr) {
		c.Conn.SetReadDeadline(time.Now().Add(c.limits.PacketTimeout))
	}
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		c.log.Warn("closing a connection that sent part of a packet", "remote", c.Conn.RemoteAddr().String(), "err", err)
		return io.EOF
	}
	length := binary.BigEndian.Uint32(c.hdr[:])
	if length > c.limits.MaxPacket {
		c.log.Warn("closing a connection that sent an oversized packet", "remote", c.Conn.RemoteAddr().String(), "length", length, "max", c.limits.MaxPacket)
		return io.EOF
	}
	if uint32(c.r.Buffered()) < length {
		// The body's rest is awaited under the packet deadline, counted
		// from now.
		c.Conn.SetReadDeadline(time.Now().Add(c.limits.PacketTimeout))
	}
	c.remaining, c.cmdNext = length, length > 0
	return nil
}

// Write bounds a reply's write: a client that stops reading cannot hold
// the session's goroutine forever.
func (c *limitedConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.limits.PacketTimeout))
	return c.Conn.Write(p)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
