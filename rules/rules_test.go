package rules

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/resolver"
)

func mustParse(t *testing.T, text string, opts Options) []*Rule {
	t.Helper()
	rs, err := Parse("rules", strings.NewReader(text), opts)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestParseSettings(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Settings
	}{
		{"recipient sales@example.com => mode never", Settings{Mode: ModeNever}},
		{"client 192.0.2.0/24 sender @partner.example => delay 1m", Settings{Delay: time.Minute}},
		{"=> mode always", Settings{Mode: ModeAlways}},
		{"helo mx.example.org => retry-window 2d mode suspicious", Settings{RetryWindow: 48 * time.Hour, Mode: ModeSuspicious}},
		{"sender @x.example => delay 300 action score", Settings{Delay: 5 * time.Minute, Action: "score"}},
		{`recipient @x.example => text "Try again in {SECONDS} s" # comment`, Settings{Text: "Try again in {SECONDS} s"}},
		{"cert-fingerprint AB:cd:01 => mode never", Settings{Mode: ModeNever}},
		{"cert-subject /^mx\\d+\\.partner\\.example$/ cert-issuer \"Partner CA\" => mode never", Settings{Mode: ModeNever}},
		{"dnsbl bl.test=127.0.0.2 => delay 1h", Settings{Delay: time.Hour}},
		{"client-name cafe.de helo dead.beef.example => mode never", Settings{Mode: ModeNever}},
	} {
		rs := mustParse(t, tc.line, Options{})
		if len(rs) != 1 || rs[0].Settings != tc.want || rs[0].Source.Line != 1 {
			t.Errorf("%s: got %+v", tc.line, rs)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"recipient a@example.com mode never", `rules:1: no "=>"`},
		{"\n\nrecipient => mode never", `rules:3: "recipient" needs a value`},
		{"recipient a@example.com =>", `nothing after "=>"`},
		{"rcpt a@example.com => mode never", `unknown match "rcpt"`},
		{"client 192.0.2.300 => mode never", "client: "},
		{"sender a@@b => mode never", "sender: "},
		{"client-name 192.0.2.1 => mode never", "client-name takes a name"},
		{"helo 192.0.2.0/24 => mode never", "helo takes a name"},
		{"client-name 192.0.2 => mode never", "client-name takes a name"},
		{"client-name 2001:db8::/32 => mode never", "client-name takes a name"},
		{"helo 10.0.*.* => mode never", "helo takes a name"},
		{"helo /( => mode never", "helo: "},
		{"recipient a@example.com => mode sometimes", `mode "sometimes"`},
		{"recipient a@example.com => delay soon", "delay: bad duration"},
		{"recipient a@example.com => delay 0", "delay 0"},
		{"recipient a@example.com => delay", `setting "delay" needs a value`},
		{"recipient a@example.com => delay 1m delay 2m", "given twice"},
		{"recipient a@example.com => colour blue", `unknown setting "colour"`},
		{"recipient a@example.com => action drop", `action "drop"`},
		{`recipient a@example.com => text "open`, "quoted"},
		{"cert-fingerprint xyz => mode never", "hexadecimal"},
		{"cert-subject /(/ => mode never", "cert-subject"},
		{"dnsbl not_a..zone => mode never", "dnsbl"},
		{"=> mode never\n=> mode sometimes", "rules:2:"},
	} {
		_, err := Parse("rules", strings.NewReader(tc.text), Options{})
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rules:") {
			t.Errorf("%q: error %v, want a ParseError containing %q", tc.text, err, tc.want)
		}
	}
}

const matchRules = `
# opt-in for one customer, a partner never greylisted, a slow rule
recipient sales@example.com              => mode never
client 192.0.2.0/24 sender @partner.example => delay 1m
client-name mail.partner.example         => mode never
helo /^dsl-/                             => mode always delay 10m
cert-fingerprint AB:CD:EF                => mode never
cert-subject mx.trusted.example          => mode never
recipient @customer.example              => mode always
recipient @customer.example              => mode suspicious
=> mode never
`

func TestMatchFirstWins(t *testing.T) {
	rs := mustParse(t, matchRules, Options{})
	s := &Set{rules: rs}
	addr := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		in   Input
		line int
	}{
		{"recipient", Input{Addr: addr("203.0.113.1"), Sender: "x@y.example", Recipient: "sales@example.com"}, 3},
		{"recipient +ext", Input{Addr: addr("203.0.113.1"), Recipient: "sales+news@example.com"}, 3},
		{"client and sender", Input{Addr: addr("192.0.2.9"), Sender: "bob@partner.example", Recipient: "a@customer.example"}, 4},
		{"client without the sender", Input{Addr: addr("192.0.2.9"), Sender: "bob@other.example", Recipient: "a@customer.example"}, 9},
		{"sender without the client", Input{Addr: addr("198.51.100.1"), Sender: "bob@partner.example", Recipient: "a@elsewhere.example"}, 11},
		{"client name", Input{Addr: addr("198.51.100.1"), Name: "mail.partner.example", Recipient: "a@customer.example"}, 5},
		{"helo regex", Input{Addr: addr("198.51.100.1"), Helo: "DSL-1-2-3.isp.example", Recipient: "a@customer.example"}, 6},
		{"fingerprint", Input{Addr: addr("198.51.100.1"), CertFingerprint: "ab:cd:ef", Recipient: "a@customer.example"}, 7},
		{"subject", Input{Addr: addr("198.51.100.1"), CertSubject: "MX.trusted.example", Recipient: "a@customer.example"}, 8},
		{"customer: the first of two lines", Input{Addr: addr("198.51.100.1"), Recipient: "a@customer.example"}, 9},
		{"subdomain is not @domain", Input{Addr: addr("198.51.100.1"), Recipient: "a@sub.customer.example"}, 11},
		{"catch-all", Input{Addr: addr("198.51.100.1"), Recipient: "a@other.example"}, 11},
	} {
		r := s.Match(context.Background(), &tc.in)
		if r == nil || r.Source.Line != tc.line {
			t.Errorf("%s: matched %v, want line %d", tc.name, r, tc.line)
		}
	}
	empty := &Set{}
	if r := empty.Match(context.Background(), &Input{Recipient: "a@b.example"}); r != nil {
		t.Errorf("empty set matched %v", r)
	}
}

func TestMatchDNSBL(t *testing.T) {
	srv := dnstest.Start(t, "testdata/bl.zone")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rs := mustParse(t, "recipient @skip.example dnsbl bl.test => delay 1h\ndnsbl bl.test => delay 2h\n=> mode always", Options{Resolver: res})
	s := &Set{rules: rs}
	ctx := context.Background()
	listed, clean := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if r := s.Match(ctx, &Input{Addr: listed, Recipient: "a@x.example"}); r == nil || r.Delay != 2*time.Hour {
		t.Errorf("listed client: matched %v", r)
	}
	if r := s.Match(ctx, &Input{Addr: clean, Recipient: "a@x.example"}); r == nil || r.Source.Line != 3 {
		t.Errorf("clean client: matched %v", r)
	}
	// The dnsbl term is looked up only when the other terms held: line 1's
	// recipient does not match, so its lookup is never made for a@x.example.
	srv.ResetCounts()
	s.Match(ctx, &Input{Addr: netip.MustParseAddr("192.0.2.3"), Recipient: "a@x.example"})
	if n := srv.Total(); n != 1 {
		t.Errorf("%d queries for one dnsbl term that had to be looked up, want 1", n)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(path, []byte("recipient a@example.com => mode never\nrecipient b@example.com => mode wrong\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, Options{}); err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("bad file: %v, want %s:2: ...", err, path)
	}
	if err := os.WriteFile(path, []byte("recipient a@example.com => mode never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, Options{})
	if err != nil || s.Len() != 1 {
		t.Fatalf("good file: %v %v", s, err)
	}
	if r := s.Match(context.Background(), &Input{Recipient: "a@example.com"}); r == nil || r.Mode != ModeNever || r.String() != path+":1" {
		t.Errorf("matched %v", r)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing"), Options{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}
