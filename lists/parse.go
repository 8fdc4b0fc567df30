package lists

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// ParseError is a line of a list file that could not be read.
type ParseError struct {
	File string
	Line int
	Err  error
}

// Error reads "FILE:LINE: what is wrong", the form editors jump to.
func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e *ParseError) Unwrap() error { return e.Err }

// maxLineLen bounds one line, so that a file that is not a list at all (a
// binary given by mistake) fails with a line number instead of eating memory.
const maxLineLen = 64 << 10

// maxWildcardPrefixes bounds the networks one wildcard line may expand to.
// Wildcards that leave later octets fixed (*.*.*.5) scatter into thousands of
// ranges; such lines are refused with a hint rather than slowly expanded.
const maxWildcardPrefixes = 4096

// Parse reads one list file of the given kind from r. name is the file name
// used in errors and in the Source of every rule.
func Parse(kind Kind, name string, r io.Reader) (*List, error) {
	b := newBuilder(kind)
	if err := b.read(name, r); err != nil {
		return nil, err
	}
	return b.build(), nil
}

// LoadFiles reads list files of one kind into one List.
func LoadFiles(kind Kind, paths ...string) (*List, error) {
	b := newBuilder(kind)
	for _, p := range paths {
		if err := b.readFile(p); err != nil {
			return nil, err
		}
	}
	return b.build(), nil
}

// builder collects the rules of one or more files before they are compiled.
type builder struct {
	l     *List
	v4    []span
	v6    []span
	file  string
	line  int
	scrap []netip.Prefix // reused by wildcard expansion
}

func newBuilder(kind Kind) *builder {
	return &builder{l: &List{kind: kind}}
}

func (b *builder) readFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err // "open PATH: why" says it all
	}
	defer f.Close()
	return b.read(p, f)
}

func (b *builder) read(name string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineLen)
	b.file, b.line = name, 0
	for sc.Scan() {
		b.line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if err := b.parseLine(s); err != nil {
			return &ParseError{File: name, Line: b.line, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", maxLineLen)
		}
		return &ParseError{File: name, Line: b.line + 1, Err: err}
	}
	return nil
}

// addRule records where the rule on the current line came from.
func (b *builder) addRule() int32 {
	b.l.sources = append(b.l.sources, Source{File: b.file, Line: b.line})
	return int32(len(b.l.sources) - 1)
}

func (b *builder) parseLine(s string) error {
	if s[0] == '/' {
		return b.parseRegexp(s)
	}
	if strings.ContainsAny(s, " \t") {
		return fmt.Errorf("%q: one rule per line, without spaces", s)
	}
	s = strings.ToLower(s)
	if b.l.kind == Clients {
		return b.parseClient(s)
	}
	return b.parseAddress(s)
}

func (b *builder) parseRegexp(s string) error {
	if len(s) < 3 || s[len(s)-1] != '/' {
		return fmt.Errorf("%q: a regex is written /regex/", s)
	}
	re, err := regexp.Compile("(?i)" + s[1:len(s)-1])
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	b.l.regexps = append(b.l.regexps, regexRule{re: re, src: b.addRule()})
	return nil
}

func (b *builder) parseClient(s string) error {
	switch {
	case strings.IndexByte(s, '@') >= 0:
		return fmt.Errorf("%q: an e-mail address in a client list (use a sender or recipient list)", s)
	case strings.ContainsAny(s, "*?") && strings.Trim(s, "0123456789.*?") == "":
		return b.parseWildcard(s)
	case strings.IndexByte(s, '/') >= 0:
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("%q is not a network: %w", s, err)
		}
		b.addPrefix(p)
		return nil
	case strings.IndexByte(s, ':') >= 0:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%q is not an IPv6 address: %w", s, err)
		}
		if a.Zone() != "" {
			return fmt.Errorf("%q: an address with a zone", s)
		}
		b.addPrefix(netip.PrefixFrom(a, a.BitLen()))
		return nil
	case strings.Trim(s, "0123456789.") == "":
		return b.parseIPv4(s)
	}
	name, err := checkName(s)
	if err != nil {
		return err
	}
	if b.l.names == nil {
		b.l.names = make(map[string]int32)
	}
	addOnce(b.l.names, name, b.addRule())
	return nil
}

// parseIPv4 reads an address or postgrey's partial forms: a.b.c is that
// /24 and a.b that /16.
func (b *builder) parseIPv4(s string) error {
	full, bits := s, 32
	switch strings.Count(s, ".") {
	case 3:
	case 2:
		full, bits = s+".0", 24
	case 1:
		full, bits = s+".0.0", 16
	default:
		return fmt.Errorf("%q is neither an IPv4 address nor a partial one (a.b or a.b.c)", s)
	}
	a, err := netip.ParseAddr(full)
	if err != nil {
		return fmt.Errorf("%q is not an IPv4 address: %w", s, err)
	}
	b.addPrefix(netip.PrefixFrom(a, bits))
	return nil
}

// parseWildcard reads an IPv4 address with shell wildcards per octet, as in
// pygreylist's files: 192.168.*.*, 10.0.0.?, 192.168.* (a trailing '*'
// covers the octets left out).
func (b *builder) parseWildcard(s string) error {
	parts := strings.Split(s, ".")
	if len(parts) < 4 && parts[len(parts)-1] == "*" {
		for len(parts) < 4 {
			parts = append(parts, "*")
		}
	}
	if len(parts) != 4 {
		return fmt.Errorf("%q: a wildcard address has four octets (or ends in .*)", s)
	}
	var octets [4][]uint8 // the values each octet pattern matches
	for i, p := range parts {
		if p == "" {
			return fmt.Errorf("%q: an empty octet", s)
		}
		for v := 0; v < 256; v++ {
			if ok, _ := path.Match(p, strconv.Itoa(v)); ok {
				octets[i] = append(octets[i], uint8(v))
			}
		}
		if len(octets[i]) == 0 {
			return fmt.Errorf("%q: octet %q matches no number from 0 to 255", s, p)
		}
	}
	b.scrap = b.scrap[:0]
	if !expandWildcard(&b.scrap, octets[:], 0) {
		return fmt.Errorf("%q covers more than %d separate networks; write it as networks (CIDR)", s, maxWildcardPrefixes)
	}
	src := b.addRule()
	for _, p := range b.scrap {
		b.addPrefixSrc(p, src)
	}
	return nil
}

// expandWildcard appends to dst the networks that cover every address whose
// octets take the values listed, base being the octets fixed so far. It
// reports false when that takes more than maxWildcardPrefixes networks.
func expandWildcard(dst *[]netip.Prefix, octets [][]uint8, base uint32) bool {
	k := 4 - len(octets)
	rest := octets[1:]
	full := true // every later octet matches 0..255
	for _, o := range rest {
		full = full && len(o) == 256
	}
	shift := uint(8 * (3 - k))
	vals := octets[0]
	for i := 0; i < len(vals); {
		if !full {
			if !expandWildcard(dst, rest, base|uint32(vals[i])<<shift) {
				return false
			}
			i++
			continue
		}
		// Consecutive values with every later octet free form one range.
		j := i
		for j+1 < len(vals) && vals[j+1] == vals[j]+1 {
			j++
		}
		lo := base | uint32(vals[i])<<shift
		hi := base | uint32(vals[j])<<shift | (uint32(1)<<shift - 1)
		*dst = rangePrefixes(*dst, lo, hi)
		i = j + 1
	}
	return len(*dst) <= maxWildcardPrefixes
}

func (b *builder) addPrefix(p netip.Prefix) { b.addPrefixSrc(p, b.addRule()) }

func (b *builder) addPrefixSrc(p netip.Prefix, src int32) {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	lo, hi := prefixSpan(p)
	if p.Addr().Is4() {
		b.v4 = append(b.v4, span{lo, hi, src})
	} else {
		b.v6 = append(b.v6, span{lo, hi, src})
	}
}

func (b *builder) parseAddress(s string) error {
	line := s
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		// As written in an SMTP command; <> is the null sender.
		s = s[1 : len(s)-1]
		if s == "" {
			src := b.addRule()
			if b.l.null == 0 {
				b.l.null = src + 1
			}
			return nil
		}
	}
	if strings.ContainsAny(s, "<>") {
		return fmt.Errorf("%q: angle brackets go around a whole address (<user@example.com>, <> for the null sender)", line)
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		name, err := checkName(s)
		if err != nil {
			return err
		}
		if b.l.domains == nil {
			b.l.domains = make(map[string]int32)
		}
		addOnce(b.l.domains, name, b.addRule())
		return nil
	}
	local, domain := s[:i], s[i+1:]
	switch {
	case local == "*" && domain == "":
		return fmt.Errorf("%q: write *@example.com for every address of a domain, or /./ for every address", line)
	case local == "*":
		local = "" // *@example.com is @example.com
	case strings.ContainsAny(local, "*?"):
		return fmt.Errorf("%q: wildcards in the local part are not supported: write *@example.com for a whole domain, or a /regex/", line)
	}
	if domain != "" {
		d, err := checkName(domain)
		if err != nil {
			return fmt.Errorf("%q: bad domain: %w", s, err)
		}
		domain = d
	}
	switch {
	case local == "" && domain == "":
		return fmt.Errorf("%q: neither a local part nor a domain", s)
	case local == "":
		if b.l.exact == nil {
			b.l.exact = make(map[string]int32)
		}
		addOnce(b.l.exact, domain, b.addRule())
	case domain == "":
		if b.l.locals == nil {
			b.l.locals = make(map[string]int32)
		}
		addOnce(b.l.locals, local, b.addRule())
	default:
		if b.l.users == nil {
			b.l.users = make(map[userKey]int32)
		}
		addOnce(b.l.users, userKey{local, domain}, b.addRule())
	}
	return nil
}

// addOnce keeps the first rule written for a key, so that a match names
// the earliest line.
func addOnce[K comparable](m map[K]int32, k K, src int32) {
	if _, ok := m[k]; !ok {
		m[k] = src
	}
}

// checkName checks a lowercased host or domain name and returns it without
// a trailing dot.
func checkName(s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%q is not an address, network, host name or /regex/: %s", s, why)
	}
	if name == "" || len(name) > 253 {
		return bad("a name has 1 to 253 characters")
	}
	if strings.ContainsAny(name, "*?") {
		return bad("names take no wildcards; example.com already matches its subdomains")
	}
	if name[0] == '.' {
		return bad("write " + strings.TrimLeft(name, ".") + ": example.com already matches its subdomains")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return bad("each label has 1 to 63 characters")
		}
		if strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return bad("a name holds only letters, digits, '-', '_' and dots")
		}
	}
	// A top-level domain is letters (or an IDN's xn--). Checking it turns a
	// mistyped address such as 192.0.2.x into an error, not a name rule
	// that never matches.
	if tld := labels[len(labels)-1]; !strings.HasPrefix(tld, "xn--") && (len(tld) < 2 || strings.Trim(tld, "abcdefghijklmnopqrstuvwxyz") != "") {
		return bad("a name ends in a top-level domain of letters")
	}
	return name, nil
}

// build compiles the collected rules; the builder is not used after.
func (b *builder) build() *List {
	b.l.v4 = buildTable(b.v4)
	b.l.v6 = buildTable(b.v6)
	return b.l
}
