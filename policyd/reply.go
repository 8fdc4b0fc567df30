package policyd

import (
	"strconv"
	"strings"

	"github.com/greymilter/greymilter/engine"
)

// Codes used when a verdict carries none.
const (
	deferECode         = "4.7.1"
	rejectECode        = "5.7.1"
	rejectCode         = 550
	temporaryCodeClass = 4
	throttleCode       = 421
)

// appendReply appends a whole answer, "action=...\n\n", for verdict v.
// h is the header to prepend for a passing verdict, or nil.
func appendReply(dst []byte, v *engine.Verdict, h *engine.Header) []byte {
	dst = append(dst, "action="...)
	switch {
	case v.Action == engine.Defer && v.Code == throttleCode:
		// A throttled subnet (--max-new-triplets): a plain 421, on which
		// Postfix ends the session as after the milter's.
		dst = appendCoded(strconv.AppendInt(dst, throttleCode, 10), v.ECode, deferECode, v.Text)
	case v.Action == engine.Defer:
		// DEFER_IF_PERMIT, as postgrey: a restriction further down that
		// rejects the recipient outright still wins, so spammers are not
		// invited to retry for addresses that do not exist.
		dst = appendCoded(append(dst, "DEFER_IF_PERMIT"...), v.ECode, deferECode, v.Text)
	case v.Action == engine.Reject:
		// A plain SMTP reply, not REJECT: Postfix would answer REJECT
		// with its access_map_reject_code, losing the verdict's code (a
		// temporary --dnsbl-code 451 would become a permanent 554).
		code := v.Code
		if code == 0 {
			code = rejectCode
		}
		def := rejectECode
		if code/100 == temporaryCodeClass {
			def = deferECode
		}
		dst = appendCoded(strconv.AppendInt(dst, int64(code), 10), v.ECode, def, v.Text)
	case h != nil:
		dst = append(dst, "PREPEND "...)
		dst = appendClean(dst, h.Name)
		dst = append(dst, ": "...)
		dst = appendClean(dst, h.Value)
	default:
		dst = append(dst, "DUNNO"...)
	}
	return append(dst, "\n\n"...)
}

// appendCoded appends " ECODE TEXT" after an action's verb or reply code.
func appendCoded(dst []byte, ecode, defECode, text string) []byte {
	if ecode == "" {
		ecode = defECode
	}
	dst = append(dst, ' ')
	dst = append(dst, ecode...)
	if text != "" {
		dst = append(dst, ' ')
		dst = appendClean(dst, text)
	}
	return dst
}

// appendClean appends s with line breaks turned into spaces: a newline in
// an answer would end it early and put the connection out of step.
func appendClean(dst []byte, s string) []byte {
	if !strings.ContainsAny(s, "\r\n") {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// message is what one connection remembers of the message its requests
// are about, to prepend each header once and spread several headers over
// several answers.
type message struct {
	instance string
	sent     []string // header names prepended so far
	pending  []engine.Header
}

// start switches to the message of instance. An empty instance (Exim, or a
// hand-written request) is a message of its own every time.
func (m *message) start(instance string) {
	if instance != "" && instance == m.instance {
		return
	}
	m.instance = instance
	m.sent = m.sent[:0]
	m.pending = m.pending[:0]
}

// queue adds headers the message should get, skipping names it already got
// or is already owed.
func (m *message) queue(hs []engine.Header) {
	for _, h := range hs {
		if !m.has(h.Name) {
			m.pending = append(m.pending, h)
		}
	}
}

func (m *message) has(name string) bool {
	for _, s := range m.sent {
		if strings.EqualFold(s, name) {
			return true
		}
	}
	for _, h := range m.pending {
		if strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

// next takes the next header owed.
func (m *message) next() (engine.Header, bool) {
	if len(m.pending) == 0 {
		return engine.Header{}, false
	}
	h := m.pending[0]
	n := copy(m.pending, m.pending[1:])
	m.pending = m.pending[:n]
	m.sent = append(m.sent, h.Name)
	return h, true
}
