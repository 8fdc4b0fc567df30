package milter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/greymilter/greymilter/engine"
)

// closedWithin fails the test unless the server closes c within d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
	return time.Since(start)
}

func TestOversizedPacketClosedBeforeItsBody(t *testing.T) {
	addr, _ := startServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 1 MiB - 1 declared, a few bytes sent: go-milter alone would allocate
	// the megabyte and wait for it.
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<20-1)
	if _, err := c.Write(append(hdr[:], 'O', 0, 0)); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, c, 3*time.Second)
}

func TestPacketAtTheLimitIsRead(t *testing.T) {
	addr, _ := startServerLimits(t, Limits{MaxPacket: 64})
	// A macro packet of exactly 64 bytes is read (and gets no reply); the
	// session goes on to negotiate.
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ActionMask: gomilter.OptAddHeader, ProtocolMask: gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	long := make([]byte, 64-5) // command, macro stage, "j\x00", value, NUL
	for i := range long {
		long[i] = 'x'
	}
	if err := s.Macros(gomilter.CodeConn, "j", string(long)); err != nil {
		t.Fatal(err)
	}
	mustContinue(t, "connect", must(s.Conn("mail.example.org", gomilter.FamilyInet, 25, "192.0.2.1")))
	if err := s.Macros(gomilter.CodeHelo, "j", string(long)+"x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Helo("mail.example.org"); err == nil {
		t.Fatal("a packet one byte over the limit was read")
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	addr, _ := startServerLimits(t, Limits{IdleTimeout: 300 * time.Millisecond, MessageTimeout: 5 * time.Second})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if took := closedWithin(t, c, 3*time.Second); took < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", took)
	}
}

func TestMessageTimeoutAfterRcpt(t *testing.T) {
	addr, _ := startServerLimits(t, Limits{IdleTimeout: 300 * time.Millisecond, MessageTimeout: 5 * time.Second})
	s := mtaSession(t, addr, "192.0.2.10", "<alice@example.org>")
	if _, err := s.Rcpt("<bob@example.net>", nil); err != nil {
		t.Fatal(err)
	}
	// The MTA receives the body for longer than the idle timeout: the end
	// of message still finds the session.
	time.Sleep(time.Second)
	if _, act, err := s.End(); err != nil || act.Code != gomilter.ActAccept {
		t.Fatalf("end of message after a long body: %v, %v", act, err)
	}
}

func TestHalfSentPacketClosed(t *testing.T) {
	addr, _ := startServerLimits(t, Limits{PacketTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0, 0}); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, c, 3*time.Second)
}

// countingListener hands out connections that count their Read calls.
type countingListener struct {
	net.Listener
	reads *int
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return countingConn{Conn: c, reads: l.reads}, err
}

type countingConn struct {
	net.Conn
	reads *int
}

func (c countingConn) Read(p []byte) (int, error) {
	*c.reads++
	return c.Conn.Read(p)
}

func TestPacketsSentTogetherTakeOneRead(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	var reads int
	ln := LimitListener(countingListener{Listener: inner, reads: &reads}, Limits{}, nil)
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	// Macros, then their command, as an MTA sends them without waiting.
	packets := [][]byte{[]byte("Dj\x00mx.test\x00"), []byte("Hmail.example.org\x00"), []byte("Mj\x00x\x00")}
	var burst []byte
	for _, p := range packets {
		burst = binary.BigEndian.AppendUint32(burst, uint32(len(p)))
		burst = append(burst, p...)
	}
	if _, err := client.Write(burst); err != nil {
		t.Fatal(err)
	}
	// Read as go-milter does: the length, then the body.
	for i, want := range packets {
		var length uint32
		if err := binary.Read(server, binary.BigEndian, &length); err != nil {
			t.Fatalf("packet %d: length: %v", i, err)
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(server, body); err != nil || string(body) != string(want) {
			t.Fatalf("packet %d: %q, %v; want %q", i, body, err, want)
		}
	}
	if reads != 1 {
		t.Fatalf("%d reads from the connection for 3 packets sent together, want 1", reads)
	}
}

// noReplyMTA is the protocol an MTA speaking version 6 offers when it
// can skip the answers at connect, HELO and MAIL, as Postfix does.
const noReplyMTA = gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH |
	gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoMailReply | gomilter.OptNoRcptReply

func TestNoReplyStagesNegotiated(t *testing.T) {
	addr, _ := startServer(t)
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ActionMask: gomilter.OptAddHeader, ProtocolMask: noReplyMTA})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, o := range []gomilter.OptProtocol{gomilter.OptNoConnReply, gomilter.OptNoHeloReply, gomilter.OptNoMailReply} {
		if !s.ProtocolOption(o) {
			t.Errorf("no-reply flag %#x not negotiated (protocol %#x)", o, s.ProtocolOpts)
		}
	}
	// RCPT carries the decision: its answer is never withheld.
	if s.ProtocolOption(gomilter.OptNoRcptReply) {
		t.Errorf("no reply negotiated at RCPT (protocol %#x)", s.ProtocolOpts)
	}
	// The client reads no answer at connect, HELO and MAIL: had the server
	// sent one, the answer read after RCPT would be connect's continue.
	mustContinue(t, "connect", must(s.Conn("mail.example.org", gomilter.FamilyInet, 25, "192.0.2.1")))
	mustContinue(t, "helo", must(s.Helo("mail.example.org")))
	mustContinue(t, "mail", must(s.Mail("<alice@example.org>", nil)))
	a, err := s.Rcpt("<bob@example.net>", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Code != gomilter.ActReplyCode || a.SMTPCode != 451 {
		t.Fatalf("RCPT of a new triplet: %c %d %q, want the 451 deferral", a.Code, a.SMTPCode, a.SMTPText)
	}
}

func TestNoReplyStagesNotOfferedNotUsed(t *testing.T) {
	addr, _ := startServer(t)
	// An MTA of protocol 6 that does not offer the flags gets every answer
	// (mtaSession reads them all).
	s := mtaSession(t, addr, "192.0.2.1", "<alice@example.org>")
	if s.ProtocolOpts&gomilter.OptProtocol(noReplyStages) != 0 {
		t.Fatalf("no-reply flags %#x negotiated with an MTA that did not offer them", s.ProtocolOpts)
	}
	a, err := s.Rcpt("<bob@example.net>", nil)
	if err != nil || a.SMTPCode != 451 {
		t.Fatalf("RCPT: %v, %v; want the 451 deferral", a, err)
	}
}

// rawMTA writes milter packets and reads the answers on a plain connection.
type rawMTA struct {
	t *testing.T
	c net.Conn
}

func (m rawMTA) send(code byte, data ...string) {
	m.t.Helper()
	body := []byte{code}
	for _, d := range data {
		body = append(body, d...)
	}
	if _, err := m.c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)); err != nil {
		m.t.Fatal(err)
	}
}

func (m rawMTA) read() (byte, []byte) {
	m.t.Helper()
	m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(m.c, hdr[:]); err != nil {
		m.t.Fatalf("reading an answer: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(m.c, body); err != nil || len(body) == 0 {
		m.t.Fatalf("reading an answer: %v", err)
	}
	return body[0], body[1:]
}

// negotiate offers the milter protocol version and flags, with the
// action of adding headers, and returns the version and flags answered.
func (m rawMTA) negotiate(version, protocol uint32) (uint32, uint32) {
	m.t.Helper()
	var offer []byte
	for _, v := range []uint32{version, uint32(gomilter.OptAddHeader), protocol} {
		offer = binary.BigEndian.AppendUint32(offer, v)
	}
	m.send('O', string(offer))
	code, data := m.read()
	if code != 'O' || len(data) < 12 {
		m.t.Fatalf("negotiation answer %q %q", code, data)
	}
	return binary.BigEndian.Uint32(data), binary.BigEndian.Uint32(data[8:])
}

// session sends one SMTP session's connect, HELO, MAIL and RCPT, as an MTA
// that expects no answer but RCPT's, and returns that answer.
func (m rawMTA) session(client, sender, rcpt string) string {
	m.t.Helper()
	m.send('C', "mail.example.org\x00", "4", "\x00\x19", client+"\x00")
	m.send('H', "mail.example.org\x00")
	m.send('M', "<"+sender+">\x00")
	m.send('R', "<"+rcpt+">\x00")
	code, data := m.read()
	if code != 'y' {
		m.t.Fatalf("answer %q %q to RCPT, want a reply code", code, data)
	}
	return strings.TrimRight(string(data), "\x00")
}

func TestQuitNewConnectionKeepsTheConnection(t *testing.T) {
	addr, _ := startServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := rawMTA{t: t, c: c}
	if v, p := m.negotiate(6, uint32(noReplyMTA)); v != 6 || p&noReplyStages != noReplyStages {
		t.Fatalf("negotiated version %d protocol %#x, want 6 with the no-reply flags %#x", v, p, noReplyStages)
	}
	if got := m.session("192.0.2.1", "alice@example.org", "bob@example.net"); !strings.HasPrefix(got, "451 ") {
		t.Fatalf("first session's RCPT: %q", got)
	}
	// SMFIC_QUIT_NC: the next SMTP session comes on the same connection.
	m.send('K')
	if got := m.session("192.0.2.2", "carol@example.org", "dave@example.net"); !strings.HasPrefix(got, "451 ") {
		t.Fatalf("second session's RCPT: %q", got)
	}
}

// recordingDecider defers every recipient and keeps the requests.
type recordingDecider struct{ reqs chan engine.Request }

func (d recordingDecider) Decide(_ context.Context, r *engine.Request) engine.Verdict {
	d.reqs <- *r
	return engine.Verdict{Action: engine.Defer, Reason: "test"}
}

func TestQuitNewConnectionForgetsTheLastHelo(t *testing.T) {
	d := recordingDecider{reqs: make(chan engine.Request, 2)}
	addr := serveMilter(t, Config{Decider: d, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := rawMTA{t: t, c: c}
	m.negotiate(2, 0) // every stage answered
	connect := func(client string) {
		m.send('C', "mail.example.org\x00", "4", "\x00\x19", client+"\x00")
		m.read()
	}
	connect("192.0.2.1")
	m.send('H', "first.example.org\x00")
	m.read()
	m.send('M', "<alice@example.org>\x00")
	m.read()
	m.send('R', "<bob@example.net>\x00")
	m.read()
	m.send('K')
	// The next SMTP session on the connection says no HELO.
	connect("192.0.2.2")
	m.send('M', "<carol@example.org>\x00")
	m.read()
	m.send('R', "<dave@example.net>\x00")
	m.read()
	first, second := <-d.reqs, <-d.reqs
	if first.Helo != "first.example.org" || second.Helo != "" || second.ClientAddr.String() != "192.0.2.2" {
		t.Fatalf("requests: first HELO %q; second HELO %q from %v, want no HELO from 192.0.2.2", first.Helo, second.Helo, second.ClientAddr)
	}
}
