package lists

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustParse(t testing.TB, kind Kind, text string) *List {
	t.Helper()
	l, err := Parse(kind, "test", strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return l
}

// clientCase is a one-rule client list, a client, and whether it matches.
type clientCase struct {
	rule string
	addr string // "" for no address
	name string
	want bool
}

func TestMatchClient(t *testing.T) {
	cases := []clientCase{
		// IPv4 addresses.
		{"192.0.2.7", "192.0.2.7", "", true},
		{"192.0.2.7", "192.0.2.8", "", false},
		{"192.0.2.7", "::ffff:192.0.2.7", "", true}, // the MTA gave a mapped address
		{"::ffff:192.0.2.7", "192.0.2.7", "", true},
		// IPv6 addresses.
		{"2001:db8::7", "2001:db8::7", "", true},
		{"2001:DB8::7", "2001:db8::7", "", true},
		{"2001:db8::7", "2001:db8::8", "", false},
		{"2001:db8::7", "192.0.2.7", "", false},
		// Networks, with and without host bits.
		{"192.0.2.0/24", "192.0.2.255", "", true},
		{"192.0.2.0/24", "192.0.3.0", "", false},
		{"192.0.2.77/24", "192.0.2.1", "", true},
		{"192.0.2.77/24", "192.0.1.255", "", false},
		{"0.0.0.0/0", "203.0.113.9", "", true},
		{"0.0.0.0/0", "2001:db8::1", "", false},
		{"2001:db8::/32", "2001:db8:ffff::1", "", true},
		{"2001:db8::/32", "2001:db9::1", "", false},
		{"2001:db8::1:2:3/64", "2001:db8::ffff", "", true},
		{"::/0", "2001:db8::1", "", true},
		{"::/0", "192.0.2.1", "", false},
		{"::ffff:192.0.2.0/120", "192.0.2.200", "", true},
		// postgrey's partial forms: a.b.c is the /24, a.b the /16.
		{"192.0.2", "192.0.2.200", "", true},
		{"192.0.2", "192.0.3.1", "", false},
		{"10.1", "10.1.200.3", "", true},
		{"10.1", "10.2.0.1", "", false},
		// Wildcards.
		{"192.168.*.*", "192.168.77.1", "", true},
		{"192.168.*.*", "192.169.0.1", "", false},
		{"192.168.*", "192.168.5.6", "", true},
		{"10.0.0.?", "10.0.0.9", "", true},
		{"10.0.0.?", "10.0.0.10", "", false},
		{"10.0.0.1?", "10.0.0.15", "", true},
		{"10.0.0.1?", "10.0.0.1", "", false},
		{"10.0.0.1*", "10.0.0.1", "", true},
		{"10.0.0.1*", "10.0.0.199", "", true},
		{"10.0.0.1*", "10.0.0.20", "", false},
		{"10.*.0.5", "10.77.0.5", "", true},
		{"10.*.0.5", "10.77.0.6", "", false},
		{"10.*.0.5", "10.77.1.5", "", false},
		{"2??.*.*.*", "255.1.1.1", "", true},
		{"2??.*.*.*", "199.1.1.1", "", false},
		// Names: the name and its subdomains, never a look-alike.
		{"example.com", "192.0.2.1", "example.com", true},
		{"example.com", "192.0.2.1", "mail.example.com", true},
		{"example.com", "192.0.2.1", "a.b.example.com", true},
		{"example.com", "192.0.2.1", "MAIL.Example.COM.", true},
		{"example.com.", "192.0.2.1", "mail.example.com", true},
		{"Example.COM", "192.0.2.1", "mail.example.com", true},
		{"example.com", "192.0.2.1", "badexample.com", false},
		{"example.com", "192.0.2.1", "example.com.evil.net", false},
		{"example.com", "192.0.2.1", "example.co", false},
		{"mail.example.com", "192.0.2.1", "example.com", false},
		{"unknown", "192.0.2.1", "unknown", false},
		{"example.com", "192.0.2.1", "", false},
		// Regexes: case-insensitive, on the client name only.
		{`/^mail\d+\.example\.com$/`, "192.0.2.1", "MAIL12.example.com", true},
		{`/^mail\d+\.example\.com$/`, "192.0.2.1", "mailx.example.com", false},
		{`/example/`, "192.0.2.1", "www.example.org", true},
		{`/^192\.0\.2\./`, "192.0.2.1", "", false},
		{`/.*/`, "192.0.2.1", "unknown", false},
		{`/.*/`, "192.0.2.1", "", false},
		{`/.*/`, "", "host.example", true},
		{`/^(?:smtp\w*|postfix)[0-9]+-g[0-9]+\.free\.fr$/`, "", "smtp5-g21.free.fr", true},
	}
	for _, c := range cases {
		l := mustParse(t, Clients, "# a comment\n\n  "+c.rule+"  # why\n")
		var addr netip.Addr
		if c.addr != "" {
			addr = netip.MustParseAddr(c.addr)
		}
		src, got := l.MatchClient(addr, c.name)
		if got != c.want {
			t.Errorf("rule %q, client %q %q: match %v, want %v", c.rule, c.addr, c.name, got, c.want)
			continue
		}
		if got && src != (Source{"test", 3}) {
			t.Errorf("rule %q, client %q %q: source %v, want test:3", c.rule, c.addr, c.name, src)
		}
	}
}

func TestMatchAddress(t *testing.T) {
	cases := []struct {
		rule, addr string
		want       bool
	}{
		{"user@example.com", "user@example.com", true},
		{"user@example.com", "USER@Example.Com", true},
		{"user@example.com", "user+list@example.com", true},
		{"user@example.com", "user+a+b@example.com", true},
		{"user@example.com", "user+@example.com", false},
		{"user@example.com", "user@mail.example.com", false},
		{"user@example.com", "other@example.com", false},
		{"user@example.com", "xuser@example.com", false},
		{"user@example.com", "user@example.org", false},
		{"user+tag@example.com", "user+tag@example.com", true},
		{"user+tag@example.com", "user+tag+x@example.com", true},
		{"user+tag@example.com", "user@example.com", false},
		{"postmaster@", "postmaster@example.com", true},
		{"postmaster@", "Postmaster@a.example.org", true},
		{"postmaster@", "postmaster+x@example.com", true},
		{"postmaster@", "postmaster", true},
		{"postmaster@", "postmasterx@example.com", false},
		{"postmaster@", "abuse@example.com", false},
		{"@example.com", "anyone@example.com", true},
		{"@example.com", "anyone@sub.example.com", false},
		{"example.com", "anyone@example.com", true},
		{"example.com", "anyone@sub.example.com", true},
		{"example.com", "anyone@badexample.com", false},
		{"example.com", "example.com@evil.net", false},
		{"example.com", "", false},
		{`/^bounce-\d+@/`, "BOUNCE-123@lists.example.org", true},
		{`/^bounce-\d+@/`, "bounce-x@lists.example.org", false},
		{`/^$/`, "", true},
		{`/^$/`, "a@b.example", false},
		// *@domain is the domain form @domain, not a literal '*'.
		{"*@example.com", "anyone@example.com", true},
		{"*@example.com", "ANYONE@Example.com.", true},
		{"*@example.com", "anyone@sub.example.com", false},
		{"*@example.com", "anyone@example.org", false},
		// <> is the null sender; angle brackets around an address are
		// taken off, as in an SMTP command.
		{"<>", "", true},
		{"<>", "a@b.example", false},
		{"<>", "mailer-daemon@b.example", false},
		{"<user@example.com>", "user@example.com", true},
		{"<user@example.com>", "user+x@example.com", true},
		{"<user@example.com>", "other@example.com", false},
		{"<@example.com>", "anyone@example.com", true},
		{"user@example.com", "", false},
		{"postmaster@", "", false},
	}
	for _, c := range cases {
		l := mustParse(t, Addresses, "\n"+c.rule+"\n")
		src, got := l.MatchAddress(c.addr)
		if got != c.want {
			t.Errorf("rule %q, address %q: match %v, want %v", c.rule, c.addr, got, c.want)
			continue
		}
		if got && src != (Source{"test", 2}) {
			t.Errorf("rule %q, address %q: source %v, want test:2", c.rule, c.addr, src)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		kind Kind
		line string
		want string // part of the message
	}{
		{Clients, "192.0.2.256", "not an IPv4 address"},
		{Clients, "192.0.300", "not an IPv4 address"},
		{Clients, "10", "neither an IPv4 address nor a partial one"},
		{Clients, "1.2.3.4.5", "neither an IPv4 address"},
		{Clients, "192.0.2.0/33", "not a network"},
		{Clients, "2001:db8::/129", "not a network"},
		{Clients, "2001:db8:::1", "not an IPv6 address"},
		{Clients, "fe80::1%eth0", "zone"},
		{Clients, "192.0.2.1 OK", "one rule per line"},
		{Clients, "user@example.com", "e-mail address in a client list"},
		{Clients, "*.example.com", "no wildcards"},
		{Clients, "10..*", "an empty octet"},
		{Clients, "10.*.5", "four octets"},
		{Clients, "10.0.0.3??", "matches no number"},
		{Clients, "*.*.*.5", "more than 4096 separate networks"},
		{Clients, "/unclosed", "a regex is written /regex/"},
		{Clients, "//", "a regex is written /regex/"},
		{Clients, "/(?=x)/", "invalid or unsupported Perl syntax"},
		{Clients, "exa$mple.com", "only letters, digits"},
		{Clients, "a..example.com", "1 to 63"},
		{Clients, "host.123", "top-level domain of letters"},
		{Clients, "192.0.2.x", "top-level domain of letters"},
		{Clients, "mail.example.c0m", "top-level domain of letters"},
		{Addresses, "@", "neither a local part nor a domain"},
		{Addresses, "user@exa mple.com", "one rule per line"},
		{Addresses, "user@[192.0.2.1]", "bad domain"},
		{Addresses, "*@example.com", ""}, // the domain form
		{Addresses, "<>", ""},            // the null sender
		{Addresses, "ex*ample.com", "no wildcards"},
		{Addresses, "*@", "write *@example.com"},
		{Addresses, "*@*", "no wildcards"},
		{Addresses, "user*@example.com", "/regex/"},
		{Addresses, "us?r@example.com", "/regex/"},
		{Addresses, "*user@", "/regex/"},
		{Addresses, "<user@example.com", "angle brackets"},
		{Addresses, "user@example.com>", "angle brackets"},
		{Addresses, "<<>>", "angle brackets"},
		{Addresses, "<user>@example.com", "angle brackets"},
		{Addresses, ".example.com", "example.com already matches its subdomains"},
		{Addresses, "@.example.com", "example.com already matches its subdomains"},
		{Clients, ".example.com", "example.com already matches its subdomains"},
		{Clients, "<>", "not an address"},
	}
	for _, c := range cases {
		text := "# header\n" + c.line + "\n"
		_, err := Parse(c.kind, "f.txt", strings.NewReader(text))
		if c.want == "" {
			if err != nil {
				t.Errorf("%v %q: %v, want no error", c.kind, c.line, err)
			}
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%v %q: error %v, want a *ParseError", c.kind, c.line, err)
			continue
		}
		if pe.File != "f.txt" || pe.Line != 2 || !strings.HasPrefix(err.Error(), "f.txt:2: ") {
			t.Errorf("%v %q: error %q, want it at f.txt:2", c.kind, c.line, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %q: error %q, want it to say %q", c.kind, c.line, err, c.want)
		}
	}
}

func TestParseLongLine(t *testing.T) {
	text := "192.0.2.1\n" + strings.Repeat("a", maxLineLen+1) + "\n"
	_, err := Parse(Clients, "big", strings.NewReader(text))
	if err == nil || !strings.HasPrefix(err.Error(), "big:2: ") {
		t.Fatalf("error %v, want one at big:2", err)
	}
}

// TestMostSpecificWins checks which line a match names when rules overlap:
// the narrowest network, and of equal rules the first one.
func TestMostSpecificWins(t *testing.T) {
	l := mustParse(t, Clients, `10.0.0.0/8
10.1.2.0/24
10.1.2.3
10.1.2.0/24
10.1
example.com
mail.example.com
example.com
`)
	for _, c := range []struct {
		addr, name string
		line       int
	}{
		{"10.9.9.9", "", 1},
		{"10.1.2.4", "", 2},
		{"10.1.2.3", "", 3},
		{"10.1.3.1", "", 5},
		{"10.2.0.0", "", 1},
		{"192.0.2.1", "example.com", 6},
		{"192.0.2.1", "x.mail.example.com", 7},
		{"192.0.2.1", "www.example.com", 6},
	} {
		src, ok := l.MatchClient(netip.MustParseAddr(c.addr), c.name)
		if !ok || src.Line != c.line {
			t.Errorf("%s %s: %v %v, want line %d", c.addr, c.name, src, ok, c.line)
		}
	}
}

func TestNilAndEmptyList(t *testing.T) {
	var l *List
	if _, ok := l.MatchClient(netip.MustParseAddr("192.0.2.1"), "example.com"); ok {
		t.Error("nil list matched a client")
	}
	if _, ok := l.MatchAddress("a@example.com"); ok {
		t.Error("nil list matched an address")
	}
	e := mustParse(t, Clients, "# nothing\n")
	if _, ok := e.MatchClient(netip.MustParseAddr("192.0.2.1"), "example.com"); ok || e.Len() != 0 {
		t.Error("empty list matched")
	}
}
