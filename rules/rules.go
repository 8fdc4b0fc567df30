// Package rules reads the rules file (--rules): ordered lines that change
// greylisting for the mail they match, the first matching line winning.
//
//	# MATCHES => SETTINGS
//	recipient sales@example.com            => mode never
//	client 192.0.2.0/24 sender @partner.example => delay 1m
//	dnsbl bl.example.org                   => delay 1h
//	recipient @customer.example            => mode always
//	                                       => mode never
//
// A match is a term and a value; every term of a line must hold. client,
// client-name, helo, sender and recipient take one rule of the list syntax
// (package lists: addresses, networks, names with their subdomains, /regex/).
// cert-subject and cert-issuer take a text compared without regard to case,
// or a /regex/; cert-fingerprint a fingerprint (colons and case do not
// matter). dnsbl takes a zone, as --addbl does (ZONE or ZONE=FILTER): the
// client must be listed there. A line without matches matches everything.
//
// Settings: delay and retry-window (durations as the flags take them), mode
// always|suspicious|never (never: no greylisting), action
// reject|greylist|mark|score (what a DNSBL listing does), text (the
// deferral text, quoted when it holds blanks).
//
// '#' outside quotes starts a comment. A bad line is an error
// "FILE:LINE: what is wrong"; ParseFile is what a configuration check
// calls.
package rules

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/internal/duration"
	"github.com/greymilter/greymilter/lists"
	"github.com/greymilter/greymilter/resolver"
)

// Mode is how a rule greylists.
type Mode int

const (
	// ModeUnset leaves the mode of --mode.
	ModeUnset Mode = iota
	// ModeAlways greylists every unknown triplet.
	ModeAlways
	// ModeSuspicious greylists only senders the suspicion checks score high.
	ModeSuspicious
	// ModeNever greylists nothing: the mail passes.
	ModeNever
)

var modeNames = [...]string{ModeUnset: "", ModeAlways: "always", ModeSuspicious: "suspicious", ModeNever: "never"}

func (m Mode) String() string { return modeNames[m] }

// Actions are the values of the action setting, the --dnsbl-action words.
var Actions = []string{"reject", "greylist", "mark", "score"}

// Settings are what a rule changes; zero values leave the flags' values.
type Settings struct {
	Delay       time.Duration
	RetryWindow time.Duration
	Mode        Mode
	Action      string // one of Actions, or ""
	Text        string // deferral template, or ""
}

// Rule is one line of the rules file.
type Rule struct {
	Source lists.Source
	Settings
	terms []term
	name  string // Source as FILE:LINE, made once for every decision's log
}

// Input is what a rule is matched against.
type Input struct {
	Addr            netip.Addr
	Name            string // verified client name, "" when none
	Helo            string
	Sender          string
	Recipient       string
	CertSubject     string // of a certificate the MTA verified
	CertIssuer      string
	CertFingerprint string
}

// Matches tells whether every term of r holds for in. DNSBL terms look
// the client up through the resolver the rules were loaded with, and only
// once every other term held.
func (r *Rule) Matches(ctx context.Context, in *Input) bool {
	for i := range r.terms {
		if !r.terms[i].match(ctx, in) {
			return false
		}
	}
	return true
}

// term is one match of a line.
type term struct {
	kind  string
	list  *lists.List    // client, client-name, helo, sender, recipient
	text  string         // cert-subject, cert-issuer, cert-fingerprint
	re    *regexp.Regexp // cert-subject, cert-issuer as /regex/
	dnsbl *dnsbl.List    // dnsbl
}

func (t *term) match(ctx context.Context, in *Input) bool {
	switch t.kind {
	case "client":
		_, ok := t.list.MatchClient(in.Addr, in.Name)
		return ok
	case "client-name":
		_, ok := t.list.MatchClient(netip.Addr{}, in.Name)
		return ok
	case "helo":
		_, ok := t.list.MatchClient(netip.Addr{}, in.Helo)
		return ok
	case "sender":
		_, ok := t.list.MatchAddress(in.Sender)
		return ok
	case "recipient":
		_, ok := t.list.MatchAddress(in.Recipient)
		return ok
	case "cert-subject":
		return t.matchText(in.CertSubject)
	case "cert-issuer":
		return t.matchText(in.CertIssuer)
	case "cert-fingerprint":
		return in.CertFingerprint != "" && normalizeFingerprint(in.CertFingerprint) == t.text
	case "dnsbl":
		return in.Addr.IsValid() && t.dnsbl.Check(ctx, in.Addr).Listed
	}
	return false
}

func (t *term) matchText(s string) bool {
	if s == "" {
		return false
	}
	if t.re != nil {
		return t.re.MatchString(s)
	}
	return strings.EqualFold(s, t.text)
}

func normalizeFingerprint(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, ":", ""))
}

// Options are what Parse needs besides the text.
type Options struct {
	// Resolver looks up the zones of dnsbl terms; nil when the rules are
	// only checked, not matched.
	Resolver *resolver.Resolver
	Log      *slog.Logger
}

// ParseError is a line of a rules file that could not be read.
type ParseError struct {
	File string
	Line int
	Err  error
}

// Error reads "FILE:LINE: what is wrong".
func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e *ParseError) Unwrap() error { return e.Err }

// maxLineLen bounds one line, as in the list files.
const maxLineLen = 64 << 10

// ParseFile reads a rules file.
func ParseFile(path string, opts Options) ([]*Rule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	return Parse(path, f, opts)
}

// Parse reads rules from r; name is the file name in errors and sources.
func Parse(name string, r io.Reader, opts Options) ([]*Rule, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineLen)
	var out []*Rule
	line := 0
	for sc.Scan() {
		line++
		words, err := split(sc.Text())
		if err != nil {
			return nil, &ParseError{name, line, err}
		}
		if len(words) == 0 {
			continue
		}
		rule, err := parseRule(words, opts)
		if err != nil {
			return nil, &ParseError{name, line, err}
		}
		rule.Source = lists.Source{File: name, Line: line}
		rule.name = rule.Source.String()
		out = append(out, rule)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", maxLineLen)
		}
		return nil, &ParseError{name, line + 1, err}
	}
	return out, nil
}

// split cuts a line into words: blanks separate, "double quotes" (Go
// syntax) hold blanks, '#' starts a comment.
func split(s string) ([]string, error) {
	var words []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" || s[0] == '#' {
			return words, nil
		}
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("unterminated or bad quoted text %s", s)
			}
			w, _ := strconv.Unquote(q)
			words = append(words, w)
			s = s[len(q):]
			if s != "" && s[0] != ' ' && s[0] != '\t' {
				return nil, fmt.Errorf("a blank must follow the quoted text %s", q)
			}
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		words = append(words, s[:end])
		s = s[end:]
	}
}

func parseRule(words []string, opts Options) (*Rule, error) {
	arrow := -1
	for i, w := range words {
		if w == "=>" {
			arrow = i
			break
		}
	}
	if arrow < 0 {
		return nil, errors.New(`no "=>": a rule is MATCHES => SETTINGS`)
	}
	r := &Rule{}
	var dnsblTerms []term
	matches := words[:arrow]
	for i := 0; i < len(matches); i += 2 {
		if i+1 >= len(matches) {
			return nil, fmt.Errorf("%q needs a value", matches[i])
		}
		t, err := parseTerm(matches[i], matches[i+1], opts)
		if err != nil {
			return nil, err
		}
		// DNS lookups last: they are worth their time only when every
		// other term held.
		if t.kind == "dnsbl" {
			dnsblTerms = append(dnsblTerms, t)
		} else {
			r.terms = append(r.terms, t)
		}
	}
	r.terms = append(r.terms, dnsblTerms...)
	settings := words[arrow+1:]
	if len(settings) == 0 {
		return nil, errors.New(`nothing after "=>": give delay, retry-window, mode, action or text`)
	}
	seen := map[string]bool{}
	for i := 0; i < len(settings); i += 2 {
		key := settings[i]
		if i+1 >= len(settings) {
			return nil, fmt.Errorf("setting %q needs a value", key)
		}
		if seen[key] {
			return nil, fmt.Errorf("setting %q given twice", key)
		}
		seen[key] = true
		if err := r.set(key, settings[i+1]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func parseTerm(kind, value string, opts Options) (term, error) {
	t := term{kind: kind}
	switch kind {
	case "client", "client-name", "helo", "sender", "recipient":
		listKind := lists.Clients
		if kind == "sender" || kind == "recipient" {
			listKind = lists.Addresses
		}
		if kind == "client-name" || kind == "helo" {
			if looksLikeAddress(value) {
				return t, fmt.Errorf("%s %s: %s takes a name or /regex/; match addresses with client", kind, value, kind)
			}
		}
		l, err := lists.Parse(listKind, kind, strings.NewReader(value))
		if err != nil {
			var pe *lists.ParseError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return t, fmt.Errorf("%s: %w", kind, err)
		}
		t.list = l
	case "cert-subject", "cert-issuer":
		if len(value) >= 3 && value[0] == '/' && value[len(value)-1] == '/' {
			re, err := regexp.Compile("(?i)" + value[1:len(value)-1])
			if err != nil {
				return t, fmt.Errorf("%s %s: %w", kind, value, err)
			}
			t.re = re
		}
		t.text = value
	case "cert-fingerprint":
		t.text = normalizeFingerprint(value)
		if t.text == "" || strings.Trim(t.text, "0123456789abcdef") != "" {
			return t, fmt.Errorf("cert-fingerprint %s: want hexadecimal digits (AB:CD:... as Postfix logs them)", value)
		}
	case "dnsbl":
		z, err := dnsbl.ParseZone(value)
		if err != nil {
			return t, err
		}
		t.dnsbl = dnsbl.NewList(opts.Resolver, dnsbl.Any, opts.Log, z)
	default:
		return t, fmt.Errorf("unknown match %q: want client, client-name, helo, sender, recipient, cert-subject, cert-issuer, cert-fingerprint or dnsbl", kind)
	}
	return t, nil
}

// looksLikeAddress tells an address, network, postgrey's partial form or
// wildcard (192.0.2, 10.*, 2001:db8::/32) from a name.
func looksLikeAddress(s string) bool {
	v4 := strings.Trim(s, "0123456789./*?") == "" && strings.ContainsAny(s, "0123456789*?")
	v6 := strings.Contains(s, ":") && strings.Trim(strings.ToLower(s), "0123456789abcdef:./") == ""
	return v4 || v6
}

func (r *Rule) set(key, value string) error {
	switch key {
	case "delay", "retry-window":
		d, err := duration.Parse(value)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if d == 0 {
			return fmt.Errorf("%s 0: want more than 0 (mode never turns greylisting off)", key)
		}
		if key == "delay" {
			r.Delay = d
		} else {
			r.RetryWindow = d
		}
	case "mode":
		for m := ModeAlways; m <= ModeNever; m++ {
			if value == m.String() {
				r.Mode = m
				return nil
			}
		}
		return fmt.Errorf("mode %q: want always, suspicious or never", value)
	case "action":
		for _, a := range Actions {
			if value == a {
				r.Action = a
				return nil
			}
		}
		return fmt.Errorf("action %q: want %s", value, strings.Join(Actions, ", "))
	case "text":
		if value == "" {
			return errors.New("text: empty")
		}
		r.Text = value
	default:
		return fmt.Errorf("unknown setting %q: want delay, retry-window, mode, action or text", key)
	}
	return nil
}

// String describes the rule for logs: FILE:LINE.
func (r *Rule) String() string { return r.name }
