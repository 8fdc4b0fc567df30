package milter

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/internal/clocktest"
)

// startServer runs a real greymilter engine (bypass, known, greylist on an
// in-memory SQLite store) behind the milter server on a loopback port.
func startServer(t *testing.T) (addr string, clock *clocktest.Clock) {
	t.Helper()
	return startServerLimits(t, Limits{})
}

// startServerLimits is startServer with connection limits.
func startServerLimits(t *testing.T, limits Limits) (addr string, clock *clocktest.Clock) {
	t.Helper()
	store, err := sqlitestore.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	clock = clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	rules := greylist.DefaultRules
	rules.Delay = 5 * time.Minute
	g := &engine.Greylisting{
		Greylist: &greylist.Greylist{Store: store, Rules: rules},
		Keyer:    greylist.DefaultKeyer,
		Hostname: "mx.test",
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := engine.New(engine.Options{Clock: clock, Logger: log}, &engine.Bypass{}, g.KnownStep(), g.GreylistStep())
	return serveMilter(t, Config{Decider: e, Logger: log, Limits: limits}), clock
}

// serveMilter runs a milter server of cfg on a loopback port until the
// test ends, and returns its address.
func serveMilter(t *testing.T, cfg Config) string {
	t.Helper()
	srv := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// mtaSession opens a milter session as Postfix would, up to MAIL FROM.
func mtaSession(t *testing.T, addr, clientIP, sender string, mailMacros ...string) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
		ActionMask:   gomilter.OptAddHeader,
		ProtocolMask: gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mustContinue(t, "connect", must(s.Conn("mail.example.org", gomilter.FamilyInet, 25, clientIP)))
	mustContinue(t, "helo", must(s.Helo("mail.example.org")))
	if len(mailMacros) > 0 {
		if err := s.Macros(gomilter.CodeMail, mailMacros...); err != nil {
			t.Fatal(err)
		}
	}
	mustContinue(t, "mail", must(s.Mail(sender, nil)))
	return s
}

func must(a *gomilter.Action, err error) *gomilter.Action {
	if err != nil {
		panic(err)
	}
	return a
}

func mustContinue(t *testing.T, what string, a *gomilter.Action) {
	t.Helper()
	if a.Code != gomilter.ActContinue {
		t.Fatalf("%s: got action %c %d %q, want continue", what, a.Code, a.SMTPCode, a.SMTPText)
	}
}

func TestPerRecipientReplies(t *testing.T) {
	addr, clock := startServer(t)

	// First transaction: both recipients are new, both deferred, each
	// with its own reply, and the session goes on.
	s := mtaSession(t, addr, "192.0.2.10", "<alice@example.org>")
	for _, rcpt := range []string{"<bob@example.net>", "<carol@example.net>"} {
		a := must(s.Rcpt(rcpt, nil))
		if a.Code != gomilter.ActReplyCode || a.SMTPCode != 451 || !strings.HasPrefix(a.SMTPText, "4.7.1 Greylisted, please try again in 300 seconds") {
			t.Fatalf("rcpt %s: got %c %d %q, want 451 4.7.1 with 300 seconds", rcpt, a.Code, a.SMTPCode, a.SMTPText)
		}
	}
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(2 * time.Minute)
	// Early retry in the same connection: the wait is what is left.
	mustContinue(t, "mail again", must(s.Mail("<alice@example.org>", nil)))
	a := must(s.Rcpt("<bob@example.net>", nil))
	if a.SMTPCode != 451 || !strings.Contains(a.SMTPText, "in 180 seconds") {
		t.Fatalf("early retry: got %d %q, want 451 with 180 seconds", a.SMTPCode, a.SMTPText)
	}
	s.Abort()

	clock.Advance(4 * time.Minute)
	// After the delay: bob passes, dave (new) is deferred, in one transaction.
	s2 := mtaSession(t, addr, "192.0.2.77", "<alice@example.org>") // same /24
	mustContinue(t, "rcpt bob after delay", must(s2.Rcpt("<bob@example.net>", nil)))
	a = must(s2.Rcpt("<dave@example.net>", nil))
	if a.SMTPCode != 451 {
		t.Fatalf("new recipient in the same transaction: got %d %q, want 451", a.SMTPCode, a.SMTPText)
	}
	mods, act, err := s2.End()
	if err != nil {
		t.Fatal(err)
	}
	if act.Code != gomilter.ActAccept {
		t.Fatalf("end of message: got %c, want accept", act.Code)
	}
	var found []string
	for _, m := range mods {
		if m.Code == gomilter.ActAddHeader {
			found = append(found, m.HeaderName+": "+m.HeaderValue)
		}
	}
	if len(found) != 1 || !strings.HasPrefix(found[0], "X-Greylist: delayed 360 seconds by greymilter at mx.test; ") {
		t.Fatalf("headers added = %q, want one X-Greylist delayed 360 seconds", found)
	}

	// The connection's state survives the end of the message: a second
	// message in the same session is judged with the same client, so a
	// new recipient is greylisted (not waved through as a local client).
	mustContinue(t, "second mail", must(s2.Mail("<alice@example.org>", nil)))
	mustContinue(t, "known triplet", must(s2.Rcpt("<bob@example.net>", nil)))
	if a := must(s2.Rcpt("<erin@example.net>", nil)); a.SMTPCode != 451 {
		t.Fatalf("second message, new recipient: got %c %d, want 451", a.Code, a.SMTPCode)
	}
}

func TestAuthenticatedSenderPasses(t *testing.T) {
	addr, _ := startServer(t)
	s := mtaSession(t, addr, "203.0.113.5", "<roamer@example.org>", "{auth_authen}", "roamer")
	mustContinue(t, "rcpt", must(s.Rcpt("<someone@example.net>", nil)))
	mods, _, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		if m.Code == gomilter.ActAddHeader {
			t.Errorf("authenticated mail got header %s: %s", m.HeaderName, m.HeaderValue)
		}
	}
	// The same client without authentication is greylisted.
	s2 := mtaSession(t, addr, "203.0.113.5", "<roamer@example.org>")
	if a := must(s2.Rcpt("<someone@example.net>", nil)); a.SMTPCode != 451 {
		t.Fatalf("unauthenticated: got %c %d, want 451", a.Code, a.SMTPCode)
	}
}

func TestMalformedPacketClosesOnlyThatConnection(t *testing.T) {
	addr, _ := startServer(t)
	good := mtaSession(t, addr, "192.0.2.10", "<alice@example.org>")

	bad, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	// A connect packet with no payload after its code.
	if _, err := bad.Write([]byte{0, 0, 0, 1, 'C'}); err != nil {
		t.Fatal(err)
	}
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bad.Read(make([]byte, 16)); err == nil {
		t.Fatal("malformed connect packet: connection still open")
	}
	// The other session is unaffected.
	if a := must(good.Rcpt("<bob@example.net>", nil)); a.SMTPCode != 451 {
		t.Fatalf("good session after a bad one: got %c %d", a.Code, a.SMTPCode)
	}
}

func TestClientName(t *testing.T) {
	for in, want := range map[string]string{
		"unknown":           "",
		"[192.0.2.1]":       "",
		"mail.example.org.": "mail.example.org",
		"mail.example.org":  "mail.example.org",
	} {
		if got := clientName(in); got != want {
			t.Errorf("clientName(%q) = %q, want %q", in, got, want)
		}
	}
}

// blockingDecider holds every decision until released.
type blockingDecider struct {
	started chan struct{}
	release chan struct{}
}

func (b *blockingDecider) Decide(ctx context.Context, req *engine.Request) engine.Verdict {
	b.started <- struct{}{}
	<-b.release
	return engine.Verdict{Action: engine.Defer, Code: 451, ECode: "4.7.1", Text: "later"}
}

func TestShutdownAnswersDecisionsInFlight(t *testing.T) {
	d := &blockingDecider{started: make(chan struct{}, 1), release: make(chan struct{})}
	srv := New(Config{Decider: d, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	s := mtaSession(t, ln.Addr().String(), "192.0.2.10", "<alice@example.org>")

	answer := make(chan *gomilter.Action, 1)
	go func() {
		a, err := s.Rcpt("<bob@example.net>", nil)
		if err != nil {
			t.Error(err)
		}
		answer <- a
	}()
	<-d.started
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- srv.Shutdown(context.Background()) }()

	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned (%v) with a decision in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	// No new connections once shutting down.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("new connection accepted during shutdown")
	}
	close(d.release)
	if a := <-answer; a == nil || a.SMTPCode != 451 {
		t.Fatalf("decision in flight got %+v, want its 451", a)
	}
	if err := <-shutdownDone; err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	// A closed server serves no more listeners.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background(), ln2); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown returned %v, want ErrServerClosed", err)
	}
	if c, err := net.DialTimeout("tcp", ln2.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("Serve after Shutdown left its listener open")
	}
}

// A network client whose address the library could not parse is judged by
// the {client_addr} macro, or as "::": never passed as a local submission.
func TestUnparsedClientAddressIsNotLocal(t *testing.T) {
	addr, _ := startServer(t)
	for _, tt := range []struct{ macro, connAddr string }{
		{"IPv6:2001:db8::5", "IPv6:2001:db8::5"},
		{"", "garbage"},
	} {
		c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
			ActionMask: gomilter.OptAddHeader, ProtocolMask: gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH,
		})
		s, err := c.Session()
		if err != nil {
			t.Fatal(err)
		}
		if tt.macro != "" {
			if err := s.Macros(gomilter.CodeConn, "{client_addr}", tt.macro); err != nil {
				t.Fatal(err)
			}
		}
		mustContinue(t, "connect", must(s.Conn("mail.example.org", gomilter.FamilyInet6, 25, tt.connAddr)))
		mustContinue(t, "helo", must(s.Helo("mail.example.org")))
		mustContinue(t, "mail", must(s.Mail("<alice@example.org>", nil)))
		if a := must(s.Rcpt("<bob@example.net>", nil)); a.SMTPCode != 451 {
			t.Errorf("address %q (macro %q): got %c %d, want 451", tt.connAddr, tt.macro, a.Code, a.SMTPCode)
		}
		s.Close()
	}
}

func TestNameVerified(t *testing.T) {
	for _, tt := range []struct {
		macros map[string]string
		want   bool
	}{
		{map[string]string{"{client_resolve}": "OK"}, true},
		{map[string]string{"{client_resolve}": "FORGED"}, false},
		{map[string]string{"{client_resolve}": "FAIL"}, false},
		{map[string]string{"{client_resolve}": "TEMP"}, false},
		{map[string]string{"{client_resolve}": "FORGED", "v": "Postfix 3.7.11"}, false},
		{map[string]string{"v": "Postfix 3.7.11", "j": "mx.example"}, true},
		{map[string]string{"j": "mx.example", "{daemon_name}": "MTA"}, false}, // Sendmail without the macro
		{nil, false},
	} {
		if got := nameVerified(tt.macros); got != tt.want {
			t.Errorf("nameVerified(%v) = %v, want %v", tt.macros, got, tt.want)
		}
	}
}

// ctxDecider waits for its context to end, as a decision on a dead
// database or DNS would, and reports that it saw it end.
type ctxDecider struct{ started, ended chan struct{} }

func (d ctxDecider) Decide(ctx context.Context, req *engine.Request) engine.Verdict {
	d.started <- struct{}{}
	<-ctx.Done()
	d.ended <- struct{}{}
	return engine.Verdict{Action: engine.Defer, Code: 451, ECode: "4.7.1", Text: "later"}
}

// Cancelling Serve's context is the hard stop: listener and connections
// close, the decision in flight sees its context end.
func TestServeContextCancel(t *testing.T) {
	d := ctxDecider{started: make(chan struct{}, 1), ended: make(chan struct{}, 1)}
	srv := New(Config{Decider: d, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	s := mtaSession(t, ln.Addr().String(), "192.0.2.10", "<alice@example.org>")
	rcpt := make(chan error, 1)
	go func() {
		_, err := s.Rcpt("<bob@example.net>", nil)
		rcpt <- err
	}()
	<-d.started
	cancel()
	select {
	case <-d.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the decision in flight did not see its context cancelled")
	}
	select {
	case err := <-served:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	select {
	case <-rcpt: // answered before the close, or cut off: either way done
	case <-time.After(5 * time.Second):
		t.Fatal("the MTA got no answer nor a closed connection after the hard stop")
	}
	// On a connection still open, this RCPT would be answered at once.
	if _, err := s.Rcpt("<carol@example.net>", nil); err == nil {
		t.Error("the connection is still open after the hard stop")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("listener still open after the hard stop")
	}
}
