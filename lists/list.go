package lists

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Kind says what a list holds, and so which syntax its lines may use.
type Kind int

const (
	// Clients lists SMTP clients: addresses, networks, names, regexes.
	Clients Kind = iota
	// Addresses lists envelope senders or recipients.
	Addresses
)

func (k Kind) String() string {
	switch k {
	case Clients:
		return "clients"
	case Addresses:
		return "addresses"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Source is where a rule was written.
type Source struct {
	File string
	Line int
}

// String formats the source as FILE:LINE.
func (s Source) String() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// regexRule is a /regex/ line.
type regexRule struct {
	re  *regexp.Regexp
	src int32
}

// userKey is the key of a user@domain rule; two strings rather than one so
// that a lookup slices the address instead of building a new string.
type userKey struct{ local, domain string }

// List is the compiled rules of one or more files of one kind. The zero
// value and nil are empty lists. A List is never changed after it is built,
// so any number of goroutines may match against it.
type List struct {
	kind    Kind
	sources []Source // by rule index

	// Clients.
	v4, v6 table
	names  map[string]int32 // name rule → rule; matches subdomains too

	// Addresses.
	users   map[userKey]int32 // user@example.com
	locals  map[string]int32  // postmaster@
	exact   map[string]int32  // @example.com
	domains map[string]int32  // example.com and subdomains
	null    int32             // <>, the null sender: its rule + 1; 0 when not listed

	regexps []regexRule // for both kinds, in file order
}

// Kind returns what the list holds.
func (l *List) Kind() Kind { return l.kind }

// Len returns the number of rules read (duplicates included).
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.sources)
}

func (l *List) source(i int32) Source { return l.sources[i] }

// MatchClient reports the rule that lists a client, given its address and
// the name the MTA verified for it ("" or "unknown" when there is none).
// Address rules are tried first, then names, then regexes.
func (l *List) MatchClient(addr netip.Addr, name string) (Source, bool) {
	if l == nil {
		return Source{}, false
	}
	if addr.IsValid() {
		addr = addr.Unmap()
		t := &l.v6
		if addr.Is4() {
			t = &l.v4
		}
		if i, ok := t.lookup(addrKey(addr)); ok {
			return l.source(i), true
		}
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" || name == "unknown" {
		return Source{}, false
	}
	if i, ok := lookupSuffix(l.names, name); ok {
		return l.source(i), true
	}
	return l.matchRegexp(name)
}

// MatchAddress reports the rule that lists an envelope address (without
// angle brackets; "" is the null sender). <> and user@example.com rules are
// tried first, then postmaster@, @example.com, example.com, and regexes last.
func (l *List) MatchAddress(addr string) (Source, bool) {
	if l == nil {
		return Source{}, false
	}
	if addr == "" && l.null > 0 {
		return l.source(l.null - 1), true
	}
	a := strings.ToLower(addr)
	local, domain := a, ""
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		local, domain = a[:i], strings.TrimSuffix(a[i+1:], ".")
	}
	if len(l.users) > 0 || len(l.locals) > 0 {
		if i, ok := l.lookupLocal(local, domain); ok {
			return l.source(i), true
		}
		// A rule for user also lists user+ext (ext not empty), as in
		// postgrey and Postfix; try the most specific part first.
		for j := len(local) - 2; j > 0; j-- {
			if local[j] != '+' {
				continue
			}
			if i, ok := l.lookupLocal(local[:j], domain); ok {
				return l.source(i), true
			}
		}
	}
	if domain != "" {
		if i, ok := l.exact[domain]; ok {
			return l.source(i), true
		}
		if i, ok := lookupSuffix(l.domains, domain); ok {
			return l.source(i), true
		}
	}
	return l.matchRegexp(addr)
}

// lookupLocal finds a user@domain or a user@ rule for local.
func (l *List) lookupLocal(local, domain string) (int32, bool) {
	if i, ok := l.users[userKey{local, domain}]; ok {
		return i, true
	}
	i, ok := l.locals[local]
	return i, ok
}

func (l *List) matchRegexp(s string) (Source, bool) {
	for _, r := range l.regexps {
		if r.re.MatchString(s) {
			return l.source(r.src), true
		}
	}
	return Source{}, false
}

// lookupSuffix finds name, or the nearest parent domain of name, in m.
func lookupSuffix(m map[string]int32, name string) (int32, bool) {
	if len(m) == 0 {
		return 0, false
	}
	for {
		if i, ok := m[name]; ok {
			return i, true
		}
		j := strings.IndexByte(name, '.')
		if j < 0 {
			return 0, false
		}
		name = name[j+1:]
	}
}
