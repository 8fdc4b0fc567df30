package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Reply is one SMTP reply.
type Reply struct {
	Code     int    // 250, 451, ...; 0 when the command was never sent
	Enhanced string // enhanced status code ("4.7.1"), "" when the server gave none
	Text     string // the rest; lines of a multi-line reply joined by "\n"
}

func (r Reply) String() string {
	if r.Enhanced == "" {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

// ok reports whether the reply is a positive one (2xx or 3xx).
func (r Reply) ok() bool { return r.Code >= 200 && r.Code < 400 }

var enhancedCode = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// Client is a minimal SMTP client that returns every reply, good or bad,
// instead of turning the bad ones into errors: what the server answers is
// what the tests look at. Errors are for broken connections only.
type Client struct {
	conn    net.Conn
	text    *textproto.Conn
	Timeout time.Duration // for each command and its reply; default 30s
}

// Dial connects to an SMTP server and reads its greeting.
func Dial(addr string) (*Client, Reply, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, Reply{}, fmt.Errorf("smtp: dial %s: %w", addr, err)
	}
	return newClient(conn)
}

// newClient speaks SMTP over conn, whose server is about to greet, and
// reads the greeting.
func newClient(conn net.Conn) (*Client, Reply, error) {
	c := &Client{conn: conn, text: textproto.NewConn(conn), Timeout: 30 * time.Second}
	r, err := c.cmd("")
	if err != nil {
		c.Close()
		return nil, r, err
	}
	return c, r, nil
}

// cmd sends one command line (none if line is empty) and reads the reply.
func (c *Client) cmd(line string) (Reply, error) {
	if err := c.conn.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
		return Reply{}, err
	}
	if line != "" {
		if err := c.text.PrintfLine("%s", line); err != nil {
			return Reply{}, fmt.Errorf("smtp: send %q: %w", line, err)
		}
	}
	return c.readReply(line)
}

func (c *Client) readReply(line string) (Reply, error) {
	code, msg, err := c.text.ReadResponse(0)
	if err != nil {
		return Reply{}, fmt.Errorf("smtp: reply to %q: %w", line, err)
	}
	r := Reply{Code: code}
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		first, rest, _ := strings.Cut(l, " ")
		if !enhancedCode.MatchString(first) {
			continue
		}
		if r.Enhanced == "" {
			r.Enhanced = first
		}
		if first == r.Enhanced {
			lines[i] = rest
		}
	}
	r.Text = strings.Join(lines, "\n")
	return r, nil
}

// Ehlo sends EHLO.
func (c *Client) Ehlo(name string) (Reply, error) { return c.cmd("EHLO " + name) }

// XClient sends Postfix's XCLIENT command with the attributes that are set
// and returns the reply: on success a fresh 220 greeting, after which the
// client must say EHLO again. See [Envelope] for the attributes.
func (c *Client) XClient(addr, name, login string) (Reply, error) {
	var attrs []string
	if addr != "" {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return Reply{}, fmt.Errorf("smtp: XCLIENT ADDR: %w", err)
		}
		v := a.String()
		if a.Is6() && !a.Is4In6() {
			v = "IPV6:" + v
		}
		attrs = append(attrs, "ADDR="+xtext(v))
	}
	if name != "" {
		attrs = append(attrs, "NAME="+xtext(name))
	}
	if login != "" {
		attrs = append(attrs, "LOGIN="+xtext(login))
	}
	return c.cmd("XCLIENT " + strings.Join(attrs, " "))
}

// xtext encodes an XCLIENT attribute value (RFC 3461 xtext).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < '!' || ch > '~' || ch == '+' || ch == '=' {
			fmt.Fprintf(&b, "+%02X", ch)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// Mail sends MAIL FROM:<from>; "" is the null sender.
func (c *Client) Mail(from string) (Reply, error) { return c.cmd("MAIL FROM:<" + from + ">") }

// Rcpt sends RCPT TO:<to>.
func (c *Client) Rcpt(to string) (Reply, error) { return c.cmd("RCPT TO:<" + to + ">") }

// Data sends DATA and, when the server is ready for it, the message (with
// dot-stuffing and CRLF line ends), and returns the server's last reply: the
// one after the message, or the refusal of DATA itself.
func (c *Client) Data(msg []byte) (Reply, error) {
	r, err := c.cmd("DATA")
	if err != nil || r.Code != 354 {
		return r, err
	}
	w := c.text.DotWriter()
	if _, err := w.Write(msg); err != nil {
		return Reply{}, fmt.Errorf("smtp: message: %w", err)
	}
	if err := w.Close(); err != nil {
		return Reply{}, fmt.Errorf("smtp: message: %w", err)
	}
	return c.readReply("end of DATA")
}

// Rset sends RSET.
func (c *Client) Rset() (Reply, error) { return c.cmd("RSET") }

// Quit sends QUIT and closes the connection.
func (c *Client) Quit() error {
	_, err := c.cmd("QUIT")
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close closes the connection without QUIT.
func (c *Client) Close() error { return c.text.Close() }

// Envelope describes one SMTP transaction for [Send].
type Envelope struct {
	// ClientAddr, ClientName and Login are sent with XCLIENT (as ADDR=,
	// NAME=, LOGIN=) when ClientAddr is set, so that Postfix and its milters
	// see the transaction as coming from that client. ClientName ""
	// stays Postfix's "unknown"; Login marks the session SASL-authenticated.
	ClientAddr string
	ClientName string
	Login      string
	// Helo is the EHLO name; default "client.example".
	Helo string
	// From is the envelope sender, without brackets; "" is the null sender.
	From string
	// To lists the envelope recipients.
	To []string
	// Message is the message sent after DATA. Nil: a small message with a
	// fresh Message-ID (see [Result.MessageID]).
	Message []byte
}

// Result holds the replies of one transaction. A stage that was not reached
// (because an earlier one failed, or no recipient was accepted) has a zero
// Reply, except Rcpt: when the transaction failed before RCPT, every
// recipient has that refusal, as a real client would report it.
type Result struct {
	Greeting, Ehlo, XClient, Mail Reply
	Rcpt                          []Reply // one per recipient of Envelope.To, in order
	Data                          Reply   // after the message, or DATA's own refusal
	MessageID                     string  // Message-ID of the generated message, with brackets
}

// Refusal returns the first 4xx or 5xx reply of the transaction, or a zero
// Reply when every command got a positive one.
func (r *Result) Refusal() Reply {
	all := append([]Reply{r.Greeting, r.Ehlo, r.XClient, r.Mail}, r.Rcpt...)
	for _, rep := range append(all, r.Data) {
		if rep.Code >= 400 {
			return rep
		}
	}
	return Reply{}
}

// Send runs one transaction against the SMTP server at addr: EHLO, XCLIENT
// and EHLO again if the envelope sets a client, MAIL, one RCPT per recipient,
// DATA when at least one recipient was accepted, QUIT. It stops at the first
// refused stage before RCPT. Connection errors fail the test.
func Send(t testing.TB, addr string, env Envelope) *Result {
	t.Helper()
	res, err := SendEnvelope(addr, env)
	if err != nil {
		t.Fatalf("harness: send: %v", err)
	}
	return res
}

// SendEnvelope is [Send] for callers that handle connection errors
// themselves, e.g. from goroutines.
func SendEnvelope(addr string, env Envelope) (*Result, error) {
	res := &Result{}
	msg := env.Message
	if msg == nil {
		res.MessageID, msg = newMessage(env)
	}
	c, greeting, err := Dial(addr)
	res.Greeting = greeting
	if err != nil {
		return res, err
	}
	if err := res.transaction(c, env, msg); err != nil {
		c.Close()
		return res, err
	}
	if res.Rcpt == nil {
		for range env.To {
			res.Rcpt = append(res.Rcpt, res.Refusal())
		}
	}
	return res, c.Quit()
}

// transaction runs what follows the greeting, up to QUIT excluded.
func (res *Result) transaction(c *Client, env Envelope, msg []byte) error {
	helo := env.Helo
	if helo == "" {
		helo = "client.example"
	}
	var err error
	if !res.Greeting.ok() {
		return nil
	}
	if res.Ehlo, err = c.Ehlo(helo); err != nil || !res.Ehlo.ok() {
		return err
	}
	if env.ClientAddr != "" {
		if res.XClient, err = c.XClient(env.ClientAddr, env.ClientName, env.Login); err != nil || !res.XClient.ok() {
			return err
		}
		if res.Ehlo, err = c.Ehlo(helo); err != nil || !res.Ehlo.ok() {
			return err
		}
	}
	if res.Mail, err = c.Mail(env.From); err != nil || !res.Mail.ok() {
		return err
	}
	accepted := 0
	for _, to := range env.To {
		r, err := c.Rcpt(to)
		if err != nil {
			return err
		}
		res.Rcpt = append(res.Rcpt, r)
		if r.ok() {
			accepted++
		}
	}
	if accepted > 0 {
		res.Data, err = c.Data(msg)
	}
	return err
}

// newMessage returns a small message for env with a fresh Message-ID.
func newMessage(env Envelope) (id string, msg []byte) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	id = "<" + hex.EncodeToString(rnd[:]) + "@harness.client.example>"
	from := env.From
	if from == "" {
		from = "MAILER-DAEMON@client.example"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(env.To, ", "))
	fmt.Fprintf(&b, "Subject: greymilter end-to-end test\r\n")
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", id)
	fmt.Fprintf(&b, "\r\nA test message from the greymilter test harness.\r\n")
	return id, []byte(b.String())
}
