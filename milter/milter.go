// Package milter is greymilter's milter front end: it speaks the Sendmail
// milter protocol (through github.com/emersion/go-milter) with Postfix or
// Sendmail, turns each RCPT into an engine.Request and each Verdict into
// that recipient's reply, and adds the verdicts' headers at end of message.
package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"

	gomilter "github.com/emersion/go-milter"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/internal/listener"
	"github.com/greymilter/greymilter/internal/loglevel"
)

// Decider judges one recipient; *engine.Engine is one.
type Decider interface {
	Decide(ctx context.Context, req *engine.Request) engine.Verdict
}

// Config configures a Server.
type Config struct {
	Decider Decider
	Logger  *slog.Logger // default slog.Default()
	// Limits bound each MTA connection; zero fields take DefaultLimits.
	Limits Limits
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("milter: server closed")

// Server is a milter server in front of a Decider, on any number of
// listeners.
type Server struct {
	cfg Config
	log *slog.Logger

	listeners listener.Set

	// inFlight is held shared by every decision; Shutdown takes it
	// exclusively to wait for the decisions under way.
	inFlight sync.RWMutex
}

// Protocol is what greymilter asks the MTA to send: everything up to RCPT,
// and no message content (the end of message still comes, for headers).
const Protocol = gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoUnknown | gomilter.OptNoData

// New returns a milter server that asks cfg.Decider about every recipient;
// zero fields of cfg take their defaults.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger}
}

// Serve accepts MTA connections on ln until Shutdown (it then returns
// ErrServerClosed) or until ctx is cancelled. Each connection is read under
// the Limits of the Config. Cancelling ctx is the hard stop: the listener
// and every connection it accepted are closed at once and decisions in
// flight see their context cancelled.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.listeners.Add(ln) {
		return ErrServerClosed
	}
	defer s.listeners.Remove(ln)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	// One go-milter server per listener, so that its sessions decide under
	// this Serve's context. It is never Closed: closing ln ends its Serve.
	gs := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return &session{srv: s, ctx: ctx} },
		Actions:   gomilter.OptAddHeader,
		Protocol:  Protocol,
	}
	err := gs.Serve(LimitListener(ctxListener{Listener: ln, ctx: ctx}, s.cfg.Limits, s.log))
	switch {
	case s.listeners.Closed():
		return ErrServerClosed
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}

// Shutdown stops accepting connections and waits, until ctx ends, for the
// decisions in flight to be answered.
func (s *Server) Shutdown(ctx context.Context) error {
	s.listeners.Close()
	drained := make(chan struct{})
	go func() {
		// Taking the lock exclusively is the wait: it is granted once
		// every decision holding it shared has answered.
		s.inFlight.Lock()
		//lint:ignore SA2001 the empty section is the wait
		s.inFlight.Unlock()
		close(drained)
	}()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ctxListener closes each connection it accepted when ctx is cancelled,
// Serve's hard stop: go-milter keeps no list of its connections.
type ctxListener struct {
	net.Listener
	ctx context.Context
}

func (l ctxListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &ctxConn{Conn: c, stop: context.AfterFunc(l.ctx, func() { c.Close() })}, nil
}

// ctxConn is a connection closed by its listener's context; closing it
// first releases that hook.
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// reply is a milter answer that keeps the session going. go-milter starts a
// new backend (losing the connection's state) after any answer whose
// Continue is false, but a per-recipient temporary failure and the end of a
// message do not end the SMTP session, so they must keep it.
type reply gomilter.Message

func (r *reply) Response() *gomilter.Message { return (*gomilter.Message)(r) }
func (r *reply) Continue() bool              { return true }

var (
	replyContinue = &reply{Code: byte(gomilter.ActContinue)}
	replyAccept   = &reply{Code: byte(gomilter.ActAccept)}
)

// smtpReply answers with an SMTP reply line (SMFIR_REPLYCODE).
func smtpReply(line string) *reply {
	// The reply is a C string: a NUL inside would cut it.
	line = strings.ReplaceAll(line, "\x00", "")
	// MTAs read the text as libmilter's smfi_setreply defines it, with '%'
	// doubled: Postfix turns "%%" into "%" and drops a lone '%' (so
	// "a%b@example.org" in {SENDER} would become "ab@example.org").
	line = strings.ReplaceAll(line, "%", "%%")
	return &reply{Code: byte(gomilter.ActReplyCode), Data: append([]byte(line), 0)}
}

// session is the state of one MTA connection.
type session struct {
	srv *Server
	ctx context.Context // Serve's: cancelled by its hard stop

	// connection
	addr    netip.Addr
	name    string // verified client name
	claimed string // client name the MTA did not vouch for
	helo    string
	postfix bool // the MTA is Postfix (macro v)
	tls     engine.TLSClient

	// transaction
	sender   string
	authUser string
	queueID  string
	headers  []engine.Header
}

func (s *session) Connect(host string, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	s.addr = netip.Addr{}
	if a, ok := netip.AddrFromSlice(addr); ok {
		s.addr = a.Unmap()
	} else if family == "tcp4" || family == "tcp6" {
		// A network client whose address did not parse (Sendmail writes
		// "IPv6:2001:db8::1") must not pass for a local submission.
		s.addr = macroAddr(m.Macros["{client_addr}"])
		if !s.addr.IsValid() {
			// Still nothing: greylist it as "::" rather than wave it
			// through.
			s.srv.log.Warn("network client without a usable address; judged as ::", "address", addr.String(), "name", host)
			s.addr = netip.IPv6Unspecified()
		}
	}
	s.name, s.claimed = clientName(host), ""
	// A connection may carry several SMTP sessions (SMFIC_QUIT_NC): the
	// last one's HELO is not this one's.
	s.helo = ""
	s.postfix = strings.HasPrefix(m.Macros["v"], "Postfix")
	s.tls = engine.TLSClient{}
	if !nameVerified(m.Macros) {
		s.name, s.claimed = "", s.name
	}
	return replyContinue, nil
}

// nameVerified tells whether the MTA vouches for the client name it gave
// (a PTR name that resolves back to the client). Sendmail gives the PTR
// name whether or not it does, and says which in {client_resolve}: OK, or
// FAIL, FORGED, TEMP; it sends the macro when Milter.macros.connect lists
// it. Postfix sends no such macro but gives only verified names ("unknown"
// otherwise), and names itself in macro v ("Postfix 3.7.11"). A name from
// any other MTA, or from a Sendmail that does not send the macro, is
// confirmed by greymilter's own lookups before it counts.
func nameVerified(macros map[string]string) bool {
	if r, ok := macros["{client_resolve}"]; ok {
		return r == "OK"
	}
	return strings.HasPrefix(macros["v"], "Postfix")
}

// macroAddr reads a client address as MTAs write it in {client_addr}.
func macroAddr(v string) netip.Addr {
	v = strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]"), "IPv6:")
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// clientName keeps a verified client name. Postfix says "unknown" and
// Sendmail "[192.0.2.1]" when the name did not verify.
func clientName(host string) string {
	if host == "unknown" || strings.HasPrefix(host, "[") {
		return ""
	}
	return strings.TrimSuffix(host, ".")
}

func (s *session) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.helo = name
	s.readTLS(m.Macros)
	return replyContinue, nil
}

// readTLS takes the client certificate from the TLS macros, which MTAs
// send with HELO (the EHLO after STARTTLS) or with MAIL. Sendmail says in
// {verify} whether it verified the certificate (OK) and sends its subject
// and issuer whatever the outcome; Postfix has no {verify} and sends
// {cert_subject} and {cert_issuer} (their CNs) only for a certificate it
// verified.
func (s *session) readTLS(macros map[string]string) {
	subject, ok := macros["{cert_subject}"]
	verify, hasVerify := macros["{verify}"]
	if !ok && !hasVerify {
		return
	}
	s.tls = engine.TLSClient{Subject: subject, Issuer: macros["{cert_issuer}"]}
	if hasVerify {
		s.tls.Verified = verify == "OK"
	} else {
		s.tls.Verified = s.postfix && subject != ""
	}
}

func (s *session) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.resetTransaction()
	s.sender = from
	s.readTLS(m.Macros)
	s.authUser = m.Macros["{auth_authen}"]
	s.queueID = m.Macros["i"]
	return replyContinue, nil
}

func (s *session) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	if id := m.Macros["i"]; id != "" {
		s.queueID = id
	}
	req := &engine.Request{
		ClientAddr:  s.addr,
		ClientName:  s.name,
		ClaimedName: s.claimed,
		Helo:        s.helo,
		Sender:      s.sender,
		Recipient:   rcpt,
		AuthUser:    s.authUser,
		QueueID:     s.queueID,
		TLS:         s.tls,
	}
	s.srv.inFlight.RLock()
	v := s.srv.cfg.Decider.Decide(s.ctx, req)
	s.srv.inFlight.RUnlock()
	if s.srv.log.Enabled(context.Background(), loglevel.Trace) {
		s.srv.log.Log(context.Background(), loglevel.Trace, "milter exchange", "client_address", s.addr.String(), "client_name", s.name,
			"claimed_name", s.claimed, "helo", s.helo, "sender", s.sender, "recipient", rcpt, "macros", fmt.Sprint(m.Macros),
			"answer", v.Action.String(), "reply", v.Reply())
	}
	if v.Action == engine.Pass {
		s.addHeaders(v.Headers)
		return replyContinue, nil
	}
	return smtpReply(v.Reply()), nil
}

// addHeaders remembers headers for the end of the message, once each.
func (s *session) addHeaders(hs []engine.Header) {
	for _, h := range hs {
		dup := false
		for _, have := range s.headers {
			if have.Name == h.Name && (have.Name == "X-Greylist" || have.Value == h.Value) {
				dup = true
				break
			}
		}
		if !dup {
			s.headers = append(s.headers, h)
		}
	}
}

func (s *session) Header(name string, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	return replyContinue, nil
}

func (s *session) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	return replyContinue, nil
}

func (s *session) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	return replyContinue, nil
}

func (s *session) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	for _, h := range s.headers {
		if err := m.AddHeader(h.Name, h.Value); err != nil {
			return nil, err
		}
	}
	s.resetTransaction()
	return replyAccept, nil
}

func (s *session) Abort(m *gomilter.Modifier) error {
	s.resetTransaction()
	return nil
}

func (s *session) resetTransaction() {
	s.sender, s.authUser, s.queueID, s.headers = "", "", "", nil
}
