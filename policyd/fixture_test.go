package policyd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greymilter/greymilter/engine"
)

// scriptStep is a real engine step whose verdict the recipient's local part
// chooses, so protocol tests can ask for every action through a real
// engine.Engine (with the real bypass step in front of it).
type scriptStep struct {
	decisions atomic.Int64
	// entered and release let a test hold a "slow@" decision in flight.
	entered chan struct{}
	release chan struct{}
}

func (*scriptStep) Name() string { return "script" }

func (s *scriptStep) Run(ctx context.Context, d *engine.Decision) (bool, error) {
	s.decisions.Add(1)
	r := d.Req
	local, _, _ := strings.Cut(r.Recipient, "@")
	switch local {
	case "defer":
		wait := 273 * time.Second
		d.Verdict = engine.Verdict{Action: engine.Defer, Code: 451, ECode: "4.7.1", Wait: wait,
			Text: engine.ExpandTemplate("Greylisted, please try again in {SECONDS} seconds", r, wait), Reason: "new"}
	case "tempfail":
		d.Verdict = engine.Verdict{Action: engine.Defer, Code: 451, Text: "no code given"}
	case "reject":
		d.Verdict = engine.Verdict{Action: engine.Reject, Code: 550, ECode: "5.7.1",
			Text: engine.ExpandTemplate("Client {CLIENT} is blacklisted", r, 0), Reason: "blacklist"}
	case "tempreject":
		// A DNSBL rejection configured with --dnsbl-code 451.
		d.Verdict = engine.Verdict{Action: engine.Reject, Code: 451, ECode: "4.7.1",
			Text: engine.ExpandTemplate("Address {CLIENT} found in bl.test", r, 0), Reason: "dnsbl"}
	case "rejectbare":
		d.Verdict = engine.Verdict{Action: engine.Reject, Text: "no code given"}
	case "echo":
		// Reports what the engine was given, so tests see the mapping.
		d.Verdict = engine.Verdict{Action: engine.Reject, ECode: "5.0.0",
			Text: fmt.Sprintf("addr=%s name=%q helo=%q sender=%q rcpt=%q auth=%q queue=%q",
				r.ClientAddr, r.ClientName, r.Helo, r.Sender, r.Recipient, r.AuthUser, r.QueueID)}
	case "newline":
		d.Verdict = engine.Verdict{Action: engine.Defer, ECode: "4.7.1", Text: "two\r\nlines"}
	case "delayed":
		d.Verdict = engine.Verdict{Action: engine.Pass, Reason: "passed",
			Headers: []engine.Header{{Name: "X-Greylist", Value: "delayed 312 seconds by greymilter at mx.test"}}}
	case "marked":
		d.Headers = append(d.Headers, engine.Header{Name: "X-RBL-Warning", Value: "listed in bl.test"})
		d.Verdict = engine.Verdict{Action: engine.Pass, Reason: "passed",
			Headers: []engine.Header{{Name: "X-Greylist", Value: "delayed 5 seconds by greymilter at mx.test"}}}
	case "slow":
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		d.Verdict = engine.Verdict{Action: engine.Pass, Reason: "slow"}
	default:
		d.Verdict = engine.Verdict{Action: engine.Pass, Reason: "known"}
	}
	return true, nil
}

// logBuffer collects log lines for tests to look at.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	t     testing.TB
	srv   *Server
	step  *scriptStep
	addr  string
	logs  *logBuffer
	serve chan error
}

// start runs a Server with a real engine on a loopback port.
func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	step := &scriptStep{entered: make(chan struct{}), release: make(chan struct{})}
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	quiet := slog.New(slog.DiscardHandler)
	cfg.Decider = engine.New(engine.Options{Logger: quiet}, &engine.Bypass{}, step)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, srv: New(cfg), step: step, addr: ln.Addr().String(), logs: logs, serve: make(chan error, 1)}
	go func() { f.serve <- f.srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.srv.Shutdown(ctx)
	})
	return f
}

type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (f *fixture) dial() *client {
	f.t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	return newClient(f.t, c)
}

func newClient(t testing.TB, c net.Conn) *client {
	t.Cleanup(func() { c.Close() })
	// No test waits on the server longer than this.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// reply reads one answer, without its "action=" and the blank line.
func (c *client) reply() (string, error) {
	line, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	blank, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if blank != "\n" {
		return "", fmt.Errorf("answer %q not followed by a blank line but %q", line, blank)
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok {
		return "", fmt.Errorf("answer %q has no action=", line)
	}
	return action, nil
}

// ask sends a request and returns the answer.
func (c *client) ask(req string) string {
	c.t.Helper()
	c.send(req)
	a, err := c.reply()
	if err != nil {
		c.t.Fatalf("request %q: %v", req, err)
	}
	return a
}

// closed reports whether the server closed the connection (after any
// answers still in flight).
func (c *client) closed() bool {
	c.t.Helper()
	_, err := c.br.ReadByte()
	if err == nil {
		return false
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("server neither answered nor closed")
	}
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset")
}

// rcpt writes a request as Postfix 3.7 sends it (testdata/postfix-rcpt.txt) in the RCPT state, with
// the attributes given in extra overriding the defaults.
func rcpt(recipient string, extra ...string) string {
	attrs := [][2]string{
		{"request", "smtpd_access_policy"},
		{"protocol_state", "RCPT"},
		{"protocol_name", "ESMTP"},
		{"client_address", "192.0.2.10"},
		{"client_name", "mail.example.org"},
		{"client_port", "41234"},
		{"reverse_client_name", "mail.example.org"},
		{"server_address", "127.0.0.1"},
		{"server_port", "25"},
		{"helo_name", "mail.example.org"},
		{"sender", "alice@example.org"},
		{"recipient", recipient},
		{"recipient_count", "0"},
		{"queue_id", ""},
		{"instance", "1a2b.6650f1c2.3d4e.0"},
		{"size", "0"},
		{"etrn_domain", ""},
		{"stress", ""},
		{"sasl_method", ""},
		{"sasl_username", ""},
		{"sasl_sender", ""},
		{"ccert_subject", ""},
		{"ccert_issuer", ""},
		{"ccert_fingerprint", ""},
		{"ccert_pubkey_fingerprint", ""},
		{"encryption_protocol", ""},
		{"encryption_cipher", ""},
		{"encryption_keysize", "0"},
		{"policy_context", ""},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		found := false
		for j := range attrs {
			if attrs[j][0] == extra[i] {
				attrs[j][1], found = extra[i+1], true
			}
		}
		if !found {
			attrs = append(attrs, [2]string{extra[i], extra[i+1]})
		}
	}
	var b strings.Builder
	for _, a := range attrs {
		if a[1] == "<absent>" {
			continue
		}
		b.WriteString(a[0] + "=" + a[1] + "\n")
	}
	b.WriteString("\n")
	return b.String()
}
