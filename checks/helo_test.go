package checks

import (
	"net/netip"
	"testing"
)

func TestHELO(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.25")
	v6 := netip.MustParseAddr("2001:db8::25")
	mapped := netip.MustParseAddr("::ffff:192.0.2.25")
	tests := []struct {
		desc       string
		addr       netip.Addr
		name, helo string
		score      int
		reason     string
	}{
		{"equal", v4, "mail.example.org", "mail.example.org", 0, "equal"},
		{"equal, case and final dot", v4, "mail.example.org.", "Mail.Example.ORG.", 0, "equal"},
		{"same registrable domain", v4, "out7.example.org", "mx1.example.org", 1, "same-domain"},
		{"helo is the domain itself", v4, "out7.example.org", "example.org", 1, "same-domain"},
		{"same domain under a two-label suffix", v4, "a.example.co.uk", "b.example.co.uk", 1, "same-domain"},
		{"only the public suffix in common", v4, "mail.one.co.uk", "mail.two.co.uk", 2, "mismatch"},
		{"other domain", v4, "mail.example.org", "mail.example.net", 2, "mismatch"},
		{"localhost", v4, "mail.example.org", "localhost", 2, "mismatch"},
		{"single label", v4, "mail.example.org", "WIN-7H3K2", 2, "mismatch"},
		{"no client name", v4, "", "mail.example.org", 2, "no-client-name"},
		{"empty helo", v4, "mail.example.org", "", 2, "empty"},
		{"IPv4 literal of the client", v4, "", "[192.0.2.25]", 1, "literal"},
		{"IPv4 literal, client IPv4-mapped", mapped, "", "[192.0.2.25]", 1, "literal"},
		{"IPv4 literal of another address", v4, "mail.example.org", "[192.0.2.26]", 2, "foreign-literal"},
		{"IPv6 literal of the client", v6, "", "[IPv6:2001:db8::25]", 1, "literal"},
		{"IPv6 literal, long form", v6, "", "[ipv6:2001:0DB8:0:0:0:0:0:25]", 1, "literal"},
		{"IPv6 literal without the tag", v6, "", "[2001:db8::25]", 1, "literal"},
		{"IPv6 tag on an IPv4 address", v4, "", "[IPv6:192.0.2.25]", 2, "foreign-literal"},
		{"IPv6 literal of another address", v6, "", "[IPv6:2001:db8::26]", 2, "foreign-literal"},
		{"IPv4 literal from an IPv6 client", v6, "", "[192.0.2.25]", 2, "foreign-literal"},
		{"unclosed literal", v4, "", "[192.0.2.25", 2, "foreign-literal"},
		{"bare address", v4, "mail.example.org", "192.0.2.25", 2, "bare-address"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := HELO(Input{Addr: tt.addr, Name: tt.name, Helo: tt.helo}, DefaultScores)
			if r.Check != "helo" || r.Score != tt.score || r.Reason != tt.reason {
				t.Errorf("HELO(name %q, helo %q) = %+v, want %d %s", tt.name, tt.helo, r, tt.score, tt.reason)
			}
		})
	}
}

func TestHELOUsesTheScores(t *testing.T) {
	s := Scores{HeloSameDomain: 5, HeloMismatch: 7}
	in := Input{Addr: netip.MustParseAddr("192.0.2.25"), Name: "out.example.org"}
	for helo, want := range map[string]int{"out.example.org": 0, "mx.example.org": 5, "[192.0.2.25]": 5, "x.example.net": 7} {
		in.Helo = helo
		if r := HELO(in, s); r.Score != want {
			t.Errorf("HELO %q: %+v, want %d", helo, r, want)
		}
	}
}

func TestSenderIsRecipient(t *testing.T) {
	tests := []struct {
		sender, rcpt string
		score        int
	}{
		{"bob@example.net", "bob@example.net", 1},
		{"Bob@Example.NET", "bob@example.net", 1},
		{"alice@example.org", "bob@example.net", 0},
		{"", "", 0}, // the null sender is nobody
	}
	for _, tt := range tests {
		r := SenderIsRecipient(Input{Sender: tt.sender, Recipient: tt.rcpt}, DefaultScores)
		if r.Score != tt.score {
			t.Errorf("SenderIsRecipient(%q, %q) = %+v, want %d", tt.sender, tt.rcpt, r, tt.score)
		}
	}
}

func TestResultString(t *testing.T) {
	for r, want := range map[Result]string{
		{Score: 2, Reason: "mismatch"}: "+2:mismatch",
		{Score: 0, Reason: "equal"}:    "0:equal",
		{Score: -1, Reason: "pass"}:    "-1:pass",
	} {
		if got := r.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", r, got, want)
		}
	}
	if got := Sum([]Result{{Score: 2}, {Score: -1}, {Score: 1}}); got != 2 {
		t.Errorf("Sum = %d, want 2", got)
	}
}
