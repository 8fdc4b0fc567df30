package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// milterConn is the MTA side of one milter connection, as Postfix speaks it:
// macros and the command they belong to leave in one write, and every
// command that has a reply waits for it.
//
// greyload has its own client rather than go-milter's because it must not
// be the bottleneck of what it measures: go-milter's client allocates a
// buffer and makes a write per packet, macros included. See
// BenchmarkMilterClient.
type milterConn struct {
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	buf     []byte // the packet being built
	reply   []byte // the last reply's payload, reused
	timeout time.Duration
	limit   time.Time // hard end of the run

	version  uint32
	protocol uint32 // what the milter asked for at negotiation
}

// Milter protocol commands and replies (libmilter's mfdef.h).
const (
	cmdAbort   = 'A'
	cmdBody    = 'B'
	cmdConnect = 'C'
	cmdMacro   = 'D'
	cmdEOB     = 'E'
	cmdHelo    = 'H'
	cmdHeader  = 'L'
	cmdMail    = 'M'
	cmdEOH     = 'N'
	cmdOptNeg  = 'O'
	cmdQuit    = 'Q'
	cmdRcpt    = 'R'
	cmdData    = 'T'

	repAccept    = 'a'
	repContinue  = 'c'
	repDiscard   = 'd'
	repReject    = 'r'
	repTempfail  = 't'
	repReplyCode = 'y'
	repProgress  = 'p'
	repSkip      = 's'

	// Protocol flags: stages the milter does not want, and (version 6)
	// stages it will not reply to.
	pNoConnect   = 1 << 0
	pNoHelo      = 1 << 1
	pNoMail      = 1 << 2
	pNoRcpt      = 1 << 3
	pNoBody      = 1 << 4
	pNoHdrs      = 1 << 5
	pNoEOH       = 1 << 6
	pNRHdr       = 1 << 7
	pNoData      = 1 << 9
	pNRConn      = 1 << 12
	pNRHelo      = 1 << 13
	pNRMail      = 1 << 14
	pNRRcpt      = 1 << 15
	pNRData      = 1 << 16
	pNREOH       = 1 << 18
	pNRBody      = 1 << 19
	pAllVersion6 = 0x1fffff

	// Actions Postfix 3.7 offers: add/change headers, change body, add and
	// delete recipients, quarantine, change sender, set macro lists.
	postfixActions = 0x1ff
)

// maxReply bounds a reply packet.
const maxReply = 1 << 20

// errRefused marks a milter that answered the negotiation oddly.
var errRefused = errors.New("milter: negotiation refused")

func dialMilter(network, address string, timeout time.Duration, limit time.Time) (*milterConn, error) {
	d := net.Dialer{Deadline: earliest(time.Now().Add(timeout), limit)}
	c, err := d.Dial(network, address)
	if err != nil {
		return nil, err
	}
	m := &milterConn{c: c, r: bufio.NewReaderSize(c, 512), w: bufio.NewWriterSize(c, 1024), timeout: timeout, limit: limit}
	if err := m.negotiate(); err != nil {
		c.Close()
		return nil, err
	}
	return m, nil
}

func earliest(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// negotiate offers what Postfix offers (version 6, every stage) and keeps
// the milter's answer; go-milter answers version 2.
func (m *milterConn) negotiate() error {
	m.start(cmdOptNeg)
	m.buf = binary.BigEndian.AppendUint32(m.buf, 6)
	m.buf = binary.BigEndian.AppendUint32(m.buf, postfixActions)
	m.buf = binary.BigEndian.AppendUint32(m.buf, pAllVersion6)
	code, err := m.roundTrip()
	if err != nil {
		return fmt.Errorf("milter: negotiate: %w", err)
	}
	if code != cmdOptNeg || len(m.reply) < 12 {
		return fmt.Errorf("%w: reply %q of %d bytes", errRefused, code, len(m.reply))
	}
	m.version = binary.BigEndian.Uint32(m.reply)
	m.protocol = binary.BigEndian.Uint32(m.reply[8:])
	if m.version < 2 || m.version > 6 {
		return fmt.Errorf("%w: version %d", errRefused, m.version)
	}
	if m.version < 6 {
		// The no-reply flags exist from version 6 on.
		m.protocol &^= pNRConn | pNRHelo | pNRMail | pNRRcpt | pNRData | pNREOH | pNRBody | pNRHdr
	}
	return nil
}

func (m *milterConn) has(flag uint32) bool { return m.protocol&flag != 0 }

// start begins a packet in buf; the length is filled in by queue.
func (m *milterConn) start(code byte) {
	m.buf = append(m.buf[:0], 0, 0, 0, 0, code)
}

func (m *milterConn) str(s string) {
	m.buf = append(m.buf, s...)
	m.buf = append(m.buf, 0)
}

// queue puts the packet in buf into the write buffer.
func (m *milterConn) queue() {
	binary.BigEndian.PutUint32(m.buf, uint32(len(m.buf)-4))
	m.w.Write(m.buf)
}

// macros queues a macro packet for the stage of command code.
func (m *milterConn) macros(code byte, kv ...string) {
	m.start(cmdMacro)
	m.buf = append(m.buf, code)
	for _, s := range kv {
		m.str(s)
	}
	m.queue()
}

func (m *milterConn) deadline() {
	m.c.SetDeadline(earliest(time.Now().Add(m.timeout), m.limit))
}

// roundTrip sends what is queued with the packet in buf and reads the
// reply, skipping progress notes.
func (m *milterConn) roundTrip() (byte, error) {
	m.queue()
	m.deadline()
	if err := m.w.Flush(); err != nil {
		return 0, err
	}
	for {
		code, err := m.read()
		if err != nil || code != repProgress {
			return code, err
		}
	}
}

// send sends what is queued with the packet in buf, expecting no reply.
func (m *milterConn) send() error {
	m.queue()
	m.deadline()
	return m.w.Flush()
}

func (m *milterConn) read() (byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(m.r, hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxReply {
		return 0, fmt.Errorf("milter: reply of %d bytes", n)
	}
	if cap(m.reply) < int(n) {
		m.reply = make([]byte, n)
	}
	m.reply = m.reply[:n]
	if _, err := io.ReadFull(m.r, m.reply); err != nil {
		return 0, err
	}
	code := m.reply[0]
	m.reply = m.reply[1:]
	return code, nil
}

// stage sends a command that has a reply unless the milter said it needs
// none, and returns the reply (continue when there is none).
func (m *milterConn) stage(skip, noReply uint32) (Answer, error) {
	if m.has(skip) {
		m.buf = m.buf[:0]
		return Answer{Code: repContinue}, nil
	}
	if m.has(noReply) {
		return Answer{Code: repContinue}, m.send()
	}
	code, err := m.roundTrip()
	if err != nil {
		return Answer{}, err
	}
	return m.answer(code)
}

// Answer is a milter's reply to one stage.
type Answer struct {
	Code byte   // repContinue, repReplyCode, ...
	SMTP int    // for repReplyCode: 451
	Text string // for repReplyCode: "4.7.1 Greylisted..."
}

func (a Answer) String() string {
	switch a.Code {
	case repReplyCode:
		return fmt.Sprintf("%d %s", a.SMTP, a.Text)
	case repContinue:
		return "continue"
	case repAccept:
		return "accept"
	case repTempfail:
		return "tempfail"
	case repReject:
		return "reject"
	case repDiscard:
		return "discard"
	}
	return fmt.Sprintf("reply %q", a.Code)
}

func (m *milterConn) answer(code byte) (Answer, error) {
	switch code {
	case repAccept, repContinue, repDiscard, repReject, repTempfail, repSkip:
		return Answer{Code: code}, nil
	case repReplyCode:
		line := m.reply
		if i := bytes.IndexByte(line, 0); i >= 0 {
			line = line[:i]
		}
		if len(line) < 4 {
			return Answer{}, fmt.Errorf("milter: short reply code %q", line)
		}
		n, err := strconv.Atoi(string(line[:3]))
		if err != nil {
			return Answer{}, fmt.Errorf("milter: bad reply code %q", line)
		}
		return Answer{Code: code, SMTP: n, Text: string(line[4:])}, nil
	}
	return Answer{}, fmt.Errorf("milter: unexpected reply %q", code)
}

// Connect sends the connect stage with the macros Postfix sends.
func (m *milterConn) Connect(mta, client string, family byte, port uint16) (Answer, error) {
	m.macros(cmdConnect,
		"j", mta,
		"{daemon_name}", "smtpd",
		"{daemon_addr}", "127.0.0.1",
		"v", "Postfix 3.7.11",
		"_", "unknown ["+client+"]",
		"{client_addr}", client,
		"{client_port}", strconv.Itoa(int(port)),
		"{client_name}", "unknown",
	)
	m.start(cmdConnect)
	m.str("unknown") // Postfix's name for a client whose reverse name did not verify
	m.buf = append(m.buf, family)
	m.buf = binary.BigEndian.AppendUint16(m.buf, port)
	m.str(client)
	return m.stage(pNoConnect, pNRConn)
}

// Helo sends the HELO stage.
func (m *milterConn) Helo(name string) (Answer, error) {
	m.start(cmdHelo)
	m.str(name)
	return m.stage(pNoHelo, pNRHelo)
}

// Mail sends the MAIL stage of an unauthenticated client.
func (m *milterConn) Mail(queueID, sender string) (Answer, error) {
	m.macros(cmdMail,
		"i", queueID,
		"{auth_type}", "",
		"{auth_authen}", "",
		"{auth_author}", "",
		"{mail_addr}", sender,
	)
	m.start(cmdMail)
	m.str("<" + sender + ">")
	m.str("BODY=8BITMIME")
	return m.stage(pNoMail, pNRMail)
}

// Rcpt sends one RCPT stage.
func (m *milterConn) Rcpt(queueID, rcpt string) (Answer, error) {
	m.macros(cmdRcpt,
		"i", queueID,
		"{rcpt_addr}", rcpt,
		"{rcpt_mailer}", "local",
	)
	m.start(cmdRcpt)
	m.str("<" + rcpt + ">")
	return m.stage(pNoRcpt, pNRRcpt)
}

// Message sends what comes after the recipients, as far as the milter
// asked for it: DATA, a few headers, the end of headers, a short body and
// the end of the message. It returns the final answer and how many header
// changes came with it.
func (m *milterConn) Message(queueID, sender, rcpt string) (Answer, int, error) {
	steps := []struct {
		build       func()
		skip, noRep uint32
	}{
		{func() { m.start(cmdData) }, pNoData, pNRData},
		{func() { m.start(cmdHeader); m.str("From"); m.str(" <" + sender + ">") }, pNoHdrs, pNRHdr},
		{func() { m.start(cmdHeader); m.str("To"); m.str(" <" + rcpt + ">") }, pNoHdrs, pNRHdr},
		{func() { m.start(cmdHeader); m.str("Subject"); m.str(" greyload") }, pNoHdrs, pNRHdr},
		{func() { m.start(cmdEOH) }, pNoEOH, pNREOH},
		{func() { m.start(cmdBody); m.buf = append(m.buf, "greyload test message\r\n"...) }, pNoBody, pNRBody},
	}
	for _, s := range steps {
		s.build()
		a, err := m.stage(s.skip, s.noRep)
		if err != nil {
			return Answer{}, 0, err
		}
		if a.Code != repContinue && a.Code != repSkip {
			return a, 0, nil
		}
	}
	m.macros(cmdEOB, "i", queueID)
	m.start(cmdEOB)
	code, err := m.roundTrip()
	changes := 0
	for err == nil && (isModification(code) || code == repProgress) {
		if code != repProgress {
			changes++
		}
		code, err = m.read()
	}
	if err != nil {
		return Answer{}, changes, err
	}
	a, err := m.answer(code)
	return a, changes, err
}

// isModification tells the replies to the end of message that change the
// message (headers, recipients, body...) from the final answer.
func isModification(code byte) bool {
	switch code {
	case '+', '-', 'b', 'h', 'm', 'i', 'q', 'e', '2', 'f':
		return true
	}
	return false
}

// Abort ends the transaction without a message. It has no reply, so it is
// only queued: it leaves with the next command.
func (m *milterConn) Abort() {
	m.start(cmdAbort)
	m.queue()
}

// Close says goodbye and closes the connection.
func (m *milterConn) Close() error {
	m.start(cmdQuit)
	err := m.send()
	return errors.Join(err, m.c.Close())
}
