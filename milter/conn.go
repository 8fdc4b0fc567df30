package milter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	gomilter "github.com/emersion/go-milter"
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

// Milter command codes (libmilter's mfdef.h) the wrapper looks at.
const (
	cmdOptNeg  = 'O' // SMFIC_OPTNEG: the negotiation, which the wrapper amends
	cmdConnect = 'C'
	cmdHelo    = 'H'
	cmdMail    = 'M'
	// After these the MTA may be silent for a whole message transfer.
	cmdRcpt = 'R'
	cmdData = 'T'
	// SMFIC_QUIT_NC (protocol 6): this SMTP session ends and another
	// follows on the same connection. go-milter does not know it and would
	// close the connection; to go-milter it reads as SMFIC_ABORT, which
	// clears the transaction, and the next SMFIC_CONNECT starts the new
	// session as it does on a new connection.
	cmdQuitNewConn = 'K'
	cmdAbort       = 'A'

	replyContinueCode = 'c'
)

// noReplyStages are the stages at which greymilter always answers
// continue, so the MTA need not wait for the answer: protocol 6's
// SMFIP_NR_CONN, SMFIP_NR_HELO and SMFIP_NR_MAIL. go-milter speaks
// protocol 2, which has no such flags; the wrapper asks for them in the
// negotiation when the MTA offers them, and withholds go-milter's answers
// to these stages. The MTA then sends connect, HELO and MAIL without a
// round trip each, and greymilter writes three replies fewer per session.
const noReplyStages = uint32(gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoMailReply)

// noReplyVersion is the first milter protocol version with no-reply flags.
const noReplyVersion = 6

// LimitListener returns a listener whose connections enforce limits (zero
// fields take DefaultLimits) and read through a buffer; the reasons it
// closes a connection are logged to log. Its connections also negotiate
// no replies at connect, HELO and MAIL with an MTA that offers them
// (noReplyStages): the milter behind it must answer continue there, and
// any other answer closes the connection. Server.Serve uses it; the
// benchmark's null milter uses it to show what the wrapper gives.
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
	r := readers.Get().(*bufio.Reader)
	r.Reset(c)
	return &limitedConn{Conn: c, r: r, limits: l.limits, log: l.log}, nil
}

// readBuffer holds what one read from the MTA brings: a packet's length
// and body, often the few packets an MTA sends without waiting for a reply
// (macros, then their command). go-milter reads a packet's length and body
// in two calls; through the buffer both come from one read(2).
const readBuffer = 4 << 10

// readers keeps the read buffers of closed connections for new ones: one
// per connection, and an MTA opens a connection per SMTP session.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBuffer) }}

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

	// mtaVersion and mtaProtocol are what the MTA offered in its
	// negotiation; noReply the stages whose answers it was told not to
	// expect.
	mtaVersion, mtaProtocol uint32
	noReply                 uint32
	// reply is where an amended negotiation answer is built.
	reply []byte
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
		if p[0] == cmdQuitNewConn {
			p[0] = cmdAbort
		}
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
	if length >= 13 {
		c.readOffer()
	}
	return nil
}

// readOffer keeps the MTA's version and protocol flags when the packet
// about to be read is its negotiation (command, version, actions,
// protocol), without consuming it. A failed peek is left for the read
// that follows to meet.
func (c *limitedConn) readOffer() {
	b, err := c.r.Peek(13)
	if err != nil || b[0] != cmdOptNeg {
		return
	}
	c.mtaVersion = binary.BigEndian.Uint32(b[1:])
	c.mtaProtocol = binary.BigEndian.Uint32(b[9:])
}

// Close closes the connection and gives its read buffer back. go-milter
// calls it once, from the goroutine that read the connection, after its
// last read.
func (c *limitedConn) Close() error {
	if c.r != nil {
		c.r.Reset(nil)
		readers.Put(c.r)
		c.r = nil
		c.err = net.ErrClosed
	}
	return c.Conn.Close()
}

// Write bounds a reply's write, so that a client that stops reading
// cannot hold the session's goroutine forever. It amends the answer to
// the negotiation and withholds the answers the MTA was told not to
// expect. go-milter writes each reply in one call, a whole packet.
func (c *limitedConn) Write(p []byte) (int, error) {
	if len(p) >= 5 && int(binary.BigEndian.Uint32(p)) == len(p)-4 {
		switch code := p[4]; {
		case c.lastCmd == cmdOptNeg && code == cmdOptNeg:
			return c.writeNegotiation(p)
		case c.noReply&stageFlag(c.lastCmd) != 0:
			if code != replyContinueCode {
				// The MTA reads no answer here: sending one would be
				// read as the answer to its next command.
				c.log.Error("milter: an answer other than continue where the MTA expects none; closing the connection", "command", string(rune(c.lastCmd)), "answer", string(rune(code)))
				return 0, errors.New("milter: answer at a no-reply stage")
			}
			return len(p), nil
		}
	}
	return c.write(p)
}

func (c *limitedConn) write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.limits.PacketTimeout))
	return c.Conn.Write(p)
}

// stageFlag is the no-reply flag of a command's stage.
func stageFlag(cmd byte) uint32 {
	switch cmd {
	case cmdConnect:
		return uint32(gomilter.OptNoConnReply)
	case cmdHelo:
		return uint32(gomilter.OptNoHeloReply)
	case cmdMail:
		return uint32(gomilter.OptNoMailReply)
	}
	return 0
}

// writeNegotiation writes go-milter's answer to the negotiation (length,
// 'O', version, actions, protocol, then optional macro lists), asking an
// MTA that speaks protocol 6 and offers them for noReplyStages.
func (c *limitedConn) writeNegotiation(p []byte) (int, error) {
	nr := noReplyStages & c.mtaProtocol
	if c.mtaVersion < noReplyVersion || nr == 0 || len(p) < 17 {
		return c.write(p)
	}
	c.reply = append(c.reply[:0], p...)
	binary.BigEndian.PutUint32(c.reply[5:], noReplyVersion)
	binary.BigEndian.PutUint32(c.reply[13:], binary.BigEndian.Uint32(p[13:])|nr)
	if _, err := c.write(c.reply); err != nil {
		return 0, err
	}
	c.noReply = nr
	return len(p), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
