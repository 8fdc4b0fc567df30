package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Request holds the attributes of one policy request that greymilter uses.
// Every other attribute is read and ignored, as the protocol asks. An
// attribute that is absent is "". reverse_client_name is among the ignored:
// the engine judges the verified name only, which is also all a milter gets.
type Request struct {
	Type          string // "request"; Postfix sends smtpd_access_policy
	ProtocolState string // CONNECT, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE, ...
	ClientAddress string
	ClientName    string // verified name, "unknown" when there is none
	HeloName      string
	Sender        string // without brackets, "" for the null sender
	Recipient     string
	SASLUsername  string
	Instance      string // the same for every request about one message
	QueueID       string
	// The client certificate: Postfix sends the subject and issuer (their
	// CNs) only for a certificate it verified; the fingerprint for any.
	CCertSubject     string
	CCertIssuer      string
	CCertFingerprint string

	// Attributes counts every attribute line of the request, used or not.
	Attributes int
}

// Errors that make a request unreadable. The connection it came on cannot
// be trusted to be in step any more and is closed.
var (
	ErrLineTooLong       = errors.New("policyd: line too long")
	ErrTooManyAttributes = errors.New("policyd: too many attributes")
	ErrMalformed         = errors.New("policyd: malformed attribute")
)

// Reader reads policy requests from one stream.
type Reader struct {
	br       *bufio.Reader
	maxAttrs int
}

// NewReader reads requests from r. A line longer than maxLine bytes
// (newline included) or a request of more than maxAttrs attributes is an
// error.
func NewReader(r io.Reader, maxLine, maxAttrs int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, maxLine), maxAttrs: maxAttrs}
}

// Buffered reports whether input is waiting in the buffer, so that the next
// Read can start without reading the stream.
func (p *Reader) Buffered() bool { return p.br.Buffered() > 0 }

// Peek waits until the next request starts arriving (or the stream fails)
// without consuming anything.
func (p *Reader) Peek() error {
	_, err := p.br.Peek(1)
	return err
}

// Read reads the next request into r. Fields of r whose value did not change
// since the request r last held keep their string, so a connection that
// sends the same client, HELO and sender for every recipient costs no
// allocation for them.
//
// Read returns io.EOF when the stream ends cleanly between requests and
// io.ErrUnexpectedEOF when it ends inside one. Blank lines before the first
// attribute of a request are skipped: a hand-written Exim request may end
// with one newline too many.
func (p *Reader) Read(r *Request) error {
	var seen uint16
	r.Attributes = 0
	for {
		line, err := p.br.ReadSlice('\n')
		if err != nil {
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				return ErrLineTooLong
			case errors.Is(err, io.EOF) && (len(line) > 0 || r.Attributes > 0):
				return io.ErrUnexpectedEOF
			}
			return err
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			if r.Attributes == 0 {
				continue
			}
			r.clear(seen)
			return nil
		}
		r.Attributes++
		if r.Attributes > p.maxAttrs {
			return ErrTooManyAttributes
		}
		eq := bytes.IndexByte(line, '=')
		if eq <= 0 {
			return fmt.Errorf("%w: %q", ErrMalformed, truncate(line, 64))
		}
		seen |= r.set(line[:eq], line[eq+1:])
	}
}

// Bits of Request's fields, to clear those a request did not send.
const (
	fType uint16 = 1 << iota
	fState
	fClientAddress
	fClientName
	fHelo
	fSender
	fRecipient
	fSASLUsername
	fInstance
	fQueueID
	fCCertSubject
	fCCertIssuer
	fCCertFingerprint
)

// set stores one attribute and reports which field it filled.
func (r *Request) set(name, value []byte) uint16 {
	// switch on string(name) and the comparisons in assign do not allocate.
	switch string(name) {
	case "request":
		assign(&r.Type, value)
		return fType
	case "protocol_state":
		assign(&r.ProtocolState, value)
		return fState
	case "client_address":
		assign(&r.ClientAddress, value)
		return fClientAddress
	case "client_name":
		assign(&r.ClientName, value)
		return fClientName
	case "helo_name":
		assign(&r.HeloName, value)
		return fHelo
	case "sender":
		assign(&r.Sender, value)
		return fSender
	case "recipient":
		assign(&r.Recipient, value)
		return fRecipient
	case "sasl_username":
		assign(&r.SASLUsername, value)
		return fSASLUsername
	case "instance":
		assign(&r.Instance, value)
		return fInstance
	case "queue_id":
		assign(&r.QueueID, value)
		return fQueueID
	case "ccert_subject":
		assign(&r.CCertSubject, value)
		return fCCertSubject
	case "ccert_issuer":
		assign(&r.CCertIssuer, value)
		return fCCertIssuer
	case "ccert_fingerprint":
		assign(&r.CCertFingerprint, value)
		return fCCertFingerprint
	}
	return 0
}

func assign(dst *string, value []byte) {
	if string(value) != *dst {
		*dst = string(value)
	}
}

// clear empties the fields a request did not send.
func (r *Request) clear(seen uint16) {
	for _, f := range [...]struct {
		bit uint16
		s   *string
	}{
		{fType, &r.Type}, {fState, &r.ProtocolState}, {fClientAddress, &r.ClientAddress},
		{fClientName, &r.ClientName}, {fHelo, &r.HeloName}, {fSender, &r.Sender}, {fRecipient, &r.Recipient},
		{fSASLUsername, &r.SASLUsername}, {fInstance, &r.Instance}, {fQueueID, &r.QueueID},
		{fCCertSubject, &r.CCertSubject}, {fCCertIssuer, &r.CCertIssuer}, {fCCertFingerprint, &r.CCertFingerprint},
	} {
		if seen&f.bit == 0 {
			*f.s = ""
		}
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
