package policyd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/sockaddr"
)

func TestActions(t *testing.T) {
	f := start(t, Config{})
	tests := []struct {
		name, req, want string
	}{
		{"defer", rcpt("defer@example.net"), "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 273 seconds"},
		{"defer without ecode", rcpt("tempfail@example.net"), "DEFER_IF_PERMIT 4.7.1 no code given"},
		// Rejections are plain SMTP replies, so that Postfix keeps the
		// verdict's code (REJECT would become access_map_reject_code).
		{"reject", rcpt("reject@example.net"), "550 5.7.1 Client 192.0.2.10 is blacklisted"},
		{"temporary reject", rcpt("tempreject@example.net"), "451 4.7.1 Address 192.0.2.10 found in bl.test"},
		{"reject without code", rcpt("rejectbare@example.net"), "550 5.7.1 no code given"},
		{"pass", rcpt("bob@example.net"), "DUNNO"},
		{"pass after delay", rcpt("delayed@example.net", "instance", "i1"), "PREPEND X-Greylist: delayed 312 seconds by greymilter at mx.test"},
		{"authenticated", rcpt("defer@example.net", "sasl_username", "alice", "sasl_method", "PLAIN"), "DUNNO"},
		{"line breaks in text", rcpt("newline@example.net"), "DEFER_IF_PERMIT 4.7.1 two  lines"},
		{"unknown request type", "request=junk\nrecipient=defer@example.net\nclient_address=192.0.2.1\n\n", "DUNNO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.dial().ask(tt.req); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEngineRequestMapping(t *testing.T) {
	f := start(t, Config{})
	c := f.dial()
	tests := []struct {
		name string
		req  string
		want string
	}{
		{"postfix", rcpt("echo@example.net", "queue_id", "4Xyz12"),
			`addr=192.0.2.10 name="mail.example.org" helo="mail.example.org" sender="alice@example.org" rcpt="echo@example.net" auth="" queue="4Xyz12"`},
		{"unknown name, null sender", rcpt("echo@example.net", "client_name", "unknown", "sender", ""),
			`addr=192.0.2.10 name="" helo="mail.example.org" sender="" rcpt="echo@example.net" auth="" queue=""`},
		{"mapped ipv6", rcpt("echo@example.net", "client_address", "::ffff:198.51.100.7"),
			`addr=198.51.100.7 name="mail.example.org" helo="mail.example.org" sender="alice@example.org" rcpt="echo@example.net" auth="" queue=""`},
		{"ipv6", rcpt("echo@example.net", "client_address", "2001:db8::25"),
			`addr=2001:db8::25 name="mail.example.org" helo="mail.example.org" sender="alice@example.org" rcpt="echo@example.net" auth="" queue=""`},
		// Exim ACLs written for postgrey send no protocol_state.
		{"exim style", "request=smtpd_access_policy\nclient_address=203.0.113.5\nclient_name=\nhelo_name=h\nsender=s@x.test\nrecipient=echo@example.net\n\n",
			`addr=203.0.113.5 name="" helo="h" sender="s@x.test" rcpt="echo@example.net" auth="" queue=""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := strings.CutPrefix(c.ask(tt.req), "550 5.0.0 ")
			if !ok || got != tt.want {
				t.Errorf("engine got\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

func TestManyRequestsOneConnection(t *testing.T) {
	f := start(t, Config{})
	c := f.dial()
	rcpts := []string{"defer", "bob", "reject", "carol", "defer"}
	want := []string{"DEFER_IF_PERMIT", "DUNNO", "550 ", "DUNNO", "DEFER_IF_PERMIT"}
	for i := range 200 {
		k := i % len(rcpts)
		got := c.ask(rcpt(rcpts[k] + "@example.net"))
		if !strings.HasPrefix(got, want[k]) {
			t.Fatalf("request %d (%s): got %q, want %s...", i, rcpts[k], got, want[k])
		}
	}
	if n := f.step.decisions.Load(); n != 200 {
		t.Errorf("engine decided %d times, want 200", n)
	}
}

func TestPipelinedRequests(t *testing.T) {
	f := start(t, Config{})
	c := f.dial()
	c.send(rcpt("defer@example.net") + rcpt("bob@example.net") + rcpt("reject@example.net"))
	for _, want := range []string{"DEFER_IF_PERMIT", "DUNNO", "550 "} {
		got, err := c.reply()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, want) {
			t.Errorf("got %q, want %s...", got, want)
		}
	}
}

func TestLenientFraming(t *testing.T) {
	f := start(t, Config{})
	c := f.dial()
	// Blank lines before a request, CRLF line ends, a repeated attribute
	// (the last value counts).
	req := "\n\r\nrequest=smtpd_access_policy\r\nprotocol_state=RCPT\r\nclient_address=192.0.2.1\r\n" +
		"recipient=bob@example.net\r\nrecipient=reject@example.net\r\n\r\n"
	if got := c.ask(req); !strings.HasPrefix(got, "550 5.7.1 Client 192.0.2.1 ") {
		t.Errorf("got %q", got)
	}
	if got := c.ask(rcpt("bob@example.net")); got != "DUNNO" {
		t.Errorf("next request: got %q", got)
	}
}

func TestPrependOncePerMessage(t *testing.T) {
	f := start(t, Config{})
	c := f.dial()
	steps := []struct {
		req, want string
	}{
		// Two recipients of one message pass after a delay: one header.
		{rcpt("delayed@example.net", "instance", "m1"), "PREPEND X-Greylist: delayed 312 seconds by greymilter at mx.test"},
		{rcpt("delayed@example.org", "instance", "m1"), "DUNNO"},
		// The next message gets its own.
		{rcpt("delayed@example.net", "instance", "m2"), "PREPEND X-Greylist: delayed 312 seconds by greymilter at mx.test"},
		// A verdict with two headers: the second waits for the next
		// answer about the same message that can carry one; a deferral
		// cannot.
		{rcpt("marked@example.net", "instance", "m3"), "PREPEND X-RBL-Warning: listed in bl.test"},
		{rcpt("defer@example.net", "instance", "m3"), "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 273 seconds"},
		{rcpt("bob@example.net", "instance", "m3"), "PREPEND X-Greylist: delayed 5 seconds by greymilter at mx.test"},
		{rcpt("", "instance", "m3", "protocol_state", "DATA"), "DUNNO"},
		// In the DATA state (check_policy_service in
		// smtpd_data_restrictions) the last owed header goes out.
		{rcpt("marked@example.net", "instance", "m4"), "PREPEND X-RBL-Warning: listed in bl.test"},
		{rcpt("", "instance", "m4", "protocol_state", "DATA"), "PREPEND X-Greylist: delayed 5 seconds by greymilter at mx.test"},
		// A new message drops what the last one was still owed.
		{rcpt("marked@example.net", "instance", "m5"), "PREPEND X-RBL-Warning: listed in bl.test"},
		{rcpt("bob@example.net", "instance", "m6"), "DUNNO"},
		// Without an instance (Exim) every request is its own message.
		{rcpt("delayed@example.net", "instance", "<absent>"), "PREPEND X-Greylist: delayed 312 seconds by greymilter at mx.test"},
		{rcpt("delayed@example.net", "instance", "<absent>"), "PREPEND X-Greylist: delayed 312 seconds by greymilter at mx.test"},
	}
	for i, s := range steps {
		if got := c.ask(s.req); got != s.want {
			t.Errorf("step %d: got %q, want %q", i, got, s.want)
		}
	}
}

func TestOnlyRCPTIsJudged(t *testing.T) {
	f := start(t, Config{})
	c := f.dial()
	for _, state := range []string{"CONNECT", "EHLO", "HELO", "MAIL", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"} {
		if got := c.ask(rcpt("defer@example.net", "protocol_state", state)); got != "DUNNO" {
			t.Errorf("state %s: got %q, want DUNNO", state, got)
		}
	}
	if n := f.step.decisions.Load(); n != 0 {
		t.Errorf("engine decided %d times outside RCPT", n)
	}
}

func TestMissingAttributes(t *testing.T) {
	f := start(t, Config{})
	c := f.dial()
	tests := []struct {
		name, req, log string
	}{
		{"no client_address", rcpt("defer@example.net", "client_address", "<absent>"), "lacks a valid client_address"},
		{"bad client_address", rcpt("defer@example.net", "client_address", "not-an-ip"), "lacks a valid client_address"},
		{"empty recipient", rcpt("", "client_address", "192.0.2.99"), "lacks recipient"},
		{"no recipient", rcpt("<absent>", "client_address", "192.0.2.98"), "lacks recipient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.ask(tt.req); got != "DUNNO" {
				t.Errorf("got %q, want DUNNO", got)
			}
			if !strings.Contains(f.logs.String(), tt.log) {
				t.Errorf("no log line %q in:\n%s", tt.log, f.logs)
			}
		})
	}
	// The connection is still in step.
	if got := c.ask(rcpt("defer@example.net")); !strings.HasPrefix(got, "DEFER_IF_PERMIT") {
		t.Errorf("after the bad requests: got %q", got)
	}
	if n := f.step.decisions.Load(); n != 1 {
		t.Errorf("engine decided %d times, want 1", n)
	}
}

func TestMalformedClosesThatConnectionOnly(t *testing.T) {
	f := start(t, Config{MaxLineLength: 512, MaxAttributes: 40})
	other := f.dial()
	if got := other.ask(rcpt("bob@example.net")); got != "DUNNO" {
		t.Fatalf("got %q", got)
	}
	tests := []struct {
		name, req, log string
	}{
		{"line without =", "request=smtpd_access_policy\ngarbage line\n\n", "malformed attribute"},
		{"empty name", "request=smtpd_access_policy\n=value\n\n", "malformed attribute"},
		{"over-long line", "request=smtpd_access_policy\nccert_subject=" + strings.Repeat("x", 600) + "\n\n", "line too long"},
		{"too many attributes", strings.Repeat("x=y\n", 41) + "\n", "too many attributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.dial()
			c.send(tt.req)
			if !c.closed() {
				t.Error("connection still open")
			}
			if !strings.Contains(f.logs.String(), tt.log) {
				t.Errorf("no log line %q in:\n%s", tt.log, f.logs)
			}
			if got := other.ask(rcpt("reject@example.net")); !strings.HasPrefix(got, "550 ") {
				t.Errorf("other connection: got %q", got)
			}
		})
	}
	// Exactly at the limit is fine: 511 bytes and the newline.
	c := f.dial()
	long := "ccert_subject=" + strings.Repeat("x", 511-len("ccert_subject="))
	if got := c.ask(long + "\n" + rcpt("bob@example.net")); got != "DUNNO" {
		t.Errorf("line at the limit: got %q", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	// Long enough that a loaded machine answers well within it; the
	// pauses below add up to more.
	const idle = 500 * time.Millisecond
	f := start(t, Config{IdleTimeout: idle})
	t.Run("half a request then silence", func(t *testing.T) {
		c := f.dial()
		req := rcpt("defer@example.net")
		c.send(req[:len(req)/2])
		if !c.closed() {
			t.Fatal("connection still open")
		}
		if !strings.Contains(f.logs.String(), "request incomplete after the idle timeout") {
			t.Errorf("no log line in:\n%s", f.logs)
		}
	})
	t.Run("idle between requests", func(t *testing.T) {
		c := f.dial()
		if got := c.ask(rcpt("bob@example.net")); got != "DUNNO" {
			t.Fatalf("got %q", got)
		}
		if !c.closed() {
			t.Fatal("connection still open")
		}
	})
	t.Run("requests slower than the timeout in total", func(t *testing.T) {
		// The timeout is per request, not per connection.
		c := f.dial()
		for range 4 {
			if got := c.ask(rcpt("bob@example.net")); got != "DUNNO" {
				t.Fatalf("got %q", got)
			}
			time.Sleep(idle * 2 / 5)
		}
	})
}

// TestIdleTimeoutSparesTheDecision checks that the idle timeout counts only
// the wait for a request: a decision that outlasts it is still answered,
// and the connection serves the next request.
func TestIdleTimeoutSparesTheDecision(t *testing.T) {
	const idle = 150 * time.Millisecond
	f := start(t, Config{IdleTimeout: idle})
	c := f.dial()
	c.send(rcpt("slow@example.net"))
	<-f.step.entered
	time.Sleep(3 * idle) // the decision takes longer than the idle timeout
	close(f.step.release)
	if got, err := c.reply(); err != nil || got != "DUNNO" {
		t.Fatalf("slow decision: got %q, %v; want DUNNO", got, err)
	}
	if got := c.ask(rcpt("defer@example.net")); !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.7.1 ") {
		t.Fatalf("next request: got %q", got)
	}
	if !c.closed() { // the idle timeout still ends an idle connection
		t.Fatal("connection still open")
	}
}

// TestWriteFailureIsAWarning checks that an answer that cannot be written
// (the client reset the connection while its request was decided) is
// logged as a warning.
func TestWriteFailureIsAWarning(t *testing.T) {
	f := start(t, Config{})
	c := f.dial()
	c.send(rcpt("slow@example.net"))
	<-f.step.entered
	c.c.(*net.TCPConn).SetLinger(0) // close with a reset
	c.c.Close()
	time.Sleep(50 * time.Millisecond) // the reset reaches the server's socket
	close(f.step.release)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.logs.String(), `level=WARN msg="write failed`) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the failed write in:\n%s", f.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseAfterReply(t *testing.T) {
	f := start(t, Config{CloseAfterReply: true})
	for _, r := range []string{"defer", "bob"} {
		c := f.dial()
		c.send(rcpt(r+"@example.net") + rcpt("reject@example.net"))
		if _, err := c.reply(); err != nil {
			t.Fatal(err)
		}
		if !c.closed() {
			t.Fatalf("%s: connection open after the answer", r)
		}
	}
	if n := f.step.decisions.Load(); n != 2 {
		t.Errorf("engine decided %d times, want 2 (one per connection)", n)
	}
}

// Exim's ${readsocket} sends the request, shuts its sending side down and
// reads until the connection ends: the answer must come, then the end,
// with or without --policy-close-after-reply.
func TestEximReadsocket(t *testing.T) {
	for _, closeAfter := range []bool{true, false} {
		t.Run(fmt.Sprintf("close-after-reply=%v", closeAfter), func(t *testing.T) {
			f := start(t, Config{CloseAfterReply: closeAfter})
			c := f.dial()
			c.send("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.5\nclient_name=unknown\n" +
				"helo_name=mx.example.com\nsender=a@example.com\nrecipient=defer@example.net\nsasl_username=\n\n")
			if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(c.br)
			if err != nil {
				t.Fatal(err)
			}
			if want := "action=DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 273 seconds\n\n"; string(all) != want {
				t.Errorf("read %q, want %q", all, want)
			}
		})
	}
}

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	f := start(t, Config{})
	idle := f.dial()
	if got := idle.ask(rcpt("bob@example.net")); got != "DUNNO" {
		t.Fatal(got)
	}
	busy := f.dial()
	busy.send(rcpt("slow@example.net"))
	<-f.step.entered

	done := make(chan error, 1)
	go func() { done <- f.srv.Shutdown(context.Background()) }()

	// The idle connection is closed at once, the busy one is not.
	if !idle.closed() {
		t.Fatal("idle connection still open")
	}
	if _, err := net.Dial("tcp", f.addr); err == nil {
		t.Error("still accepting connections")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(f.step.release)
	if got, err := busy.reply(); err != nil || got != "DUNNO" {
		t.Fatalf("request in flight: got %q, %v", got, err)
	}
	if !busy.closed() {
		t.Error("busy connection open after its answer")
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-f.serve; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
}

func TestShutdownDeadlineCancelsDecisions(t *testing.T) {
	f := start(t, Config{})
	busy := f.dial()
	busy.send(rcpt("slow@example.net"))
	<-f.step.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want deadline exceeded", err)
	}
	// The cancelled decision may still get the engine's fallback out
	// before the socket closes; it must not be a pass.
	if got, err := busy.reply(); err == nil && !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.3.0") {
		t.Errorf("cancelled decision answered %q", got)
	} else if err == nil && !busy.closed() {
		t.Error("connection still open after the hard stop")
	}
}

func TestServeContextCancel(t *testing.T) {
	srv := New(Config{Decider: start(t, Config{}).srv.cfg.Decider})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, rcpt("bob@example.net"))
	buf := make([]byte, 64)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "action=DUNNO\n\n" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve returned %v", err)
	}
	if _, err := c.Read(buf); err == nil {
		t.Error("connection still open after ctx was cancelled")
	}
}

func TestUnixSocket(t *testing.T) {
	f := start(t, Config{})
	path := filepath.Join(t.TempDir(), "policy.sock")
	a, err := sockaddr.Parse("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := sockaddr.Listen(context.Background(), a, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	go f.srv.Serve(context.Background(), ln)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 {
		t.Errorf("socket mode %v", fi.Mode().Perm())
	}
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, nc)
	if got := c.ask(rcpt("defer@example.net")); !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.7.1 ") {
		t.Errorf("got %q", got)
	}
}
