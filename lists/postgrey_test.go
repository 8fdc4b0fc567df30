package lists

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

// lineOf returns the number of the first line of file that reads rule
// (ignoring surrounding blanks), so tests name rules instead of numbers.
func lineOf(t *testing.T, text []byte, rule string) int {
	t.Helper()
	for i, l := range strings.Split(string(text), "\n") {
		if strings.TrimSpace(l) == rule {
			return i + 1
		}
	}
	t.Fatalf("no line %q", rule)
	return 0
}

// TestPostgreyClients reads postgrey 1.37's shipped whitelist_clients
// unchanged and checks that it matches as postgrey documents: names match
// the name and its subdomains, regexes the client name, a.b.c the /24,
// networks and IPv6 networks their addresses.
func TestPostgreyClients(t *testing.T) {
	const file = "testdata/postgrey_whitelist_clients"
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	l, err := LoadFiles(Clients, file)
	if err != nil {
		t.Fatalf("postgrey's own file does not parse: %v", err)
	}
	cases := []struct {
		addr, name string
		rule       string // "" for no match
	}{
		{"198.51.100.1", "mail-wr1-f41.google.com", "google.com"},
		{"198.51.100.1", "google.com", "google.com"},
		{"198.51.100.1", "notgoogle.com", ""},
		{"198.51.100.1", "vger.kernel.org", "vger.kernel.org"},
		{"198.51.100.1", "kernel.org", ""},
		{"198.51.100.1", "ms-smtp-03.southeast.rr.com", `/^ms-smtp.*\.rr\.com$/`},
		{"198.51.100.1", "MS-SMTP-03.RR.COM", `/^ms-smtp.*\.rr\.com$/`},
		{"198.51.100.1", "sv12pub.verizon.net", `/^s[cv]\d+pub\.verizon\.net$/`},
		{"198.51.100.1", "sx12pub.verizon.net", ""},
		{"198.51.100.1", "smtp5-g21.free.fr", `/^(?:smtp\w*|postfix)[0-9]+-g[0-9]+\.free\.fr$/`},
		{"198.51.100.1", "dgfip.finances.gouv.fr", "dgfip.finances.gouv.fr"},
		{"198.51.100.1", "unknown", ""},
		{"66.216.126.174", "", "66.216.126.174"},
		{"66.216.126.175", "", ""},
		{"195.235.39.200", "", "195.235.39"},
		{"195.235.40.1", "", ""},
		{"51.4.72.99", "", "51.4.72.0/24"},
		{"51.4.80.31", "", "51.4.80.0/27"},
		{"51.4.80.32", "", ""},
		{"2a01:4180:4051:800::25", "", "2a01:4180:4051:0800::/64"},
		{"2a01:4180:4051:801::25", "", ""},
		{"205.201.140.3", "", "205.201.128.0/20"},
	}
	for _, c := range cases {
		src, ok := l.MatchClient(netip.MustParseAddr(c.addr), c.name)
		if c.rule == "" {
			if ok {
				t.Errorf("%s %s matched %v, want no match", c.addr, c.name, src)
			}
			continue
		}
		want := Source{file, lineOf(t, text, c.rule)}
		if !ok || src != want {
			t.Errorf("%s %s: %v %v, want %v (%s)", c.addr, c.name, src, ok, want, c.rule)
		}
	}
}

// TestPostgreyRecipients reads postgrey's whitelist_recipients: "postmaster@"
// and "abuse@" whitelist that local part at every domain.
func TestPostgreyRecipients(t *testing.T) {
	const file = "testdata/postgrey_whitelist_recipients"
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	l, err := LoadFiles(Addresses, file)
	if err != nil {
		t.Fatalf("postgrey's own file does not parse: %v", err)
	}
	for _, c := range []struct{ addr, rule string }{
		{"postmaster@example.com", "postmaster@"},
		{"Postmaster@Example.ORG", "postmaster@"},
		{"abuse+reports@example.net", "abuse@"},
		{"user@example.com", ""},
		{"abusive@example.com", ""},
	} {
		src, ok := l.MatchAddress(c.addr)
		if c.rule == "" {
			if ok {
				t.Errorf("%s matched %v, want no match", c.addr, src)
			}
			continue
		}
		if want := (Source{file, lineOf(t, text, c.rule)}); !ok || src != want {
			t.Errorf("%s: %v %v, want %v", c.addr, src, ok, want)
		}
	}
}
