package milter

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
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
