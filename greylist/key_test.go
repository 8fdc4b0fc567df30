package greylist

import (
	"net/netip"
	"testing"
)

func TestNormalizeSender(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Alice@Example.ORG", "alice@example.org"},
		{" alice@example.org ", "alice@example.org"},
		{"alice+news@example.org", "alice@example.org"},
		{"prvs=1234abcdef=alice@example.org", "alice@example.org"},
		{"PRVS=0123456789=Alice@Example.org", "alice@example.org"},
		{"msprvs1=17623Tb4eB4Ht=bounces-123@example.org", "bounces-#@example.org"},
		{"btv1==0957d6f5b0d==alice@example.org", "alice@example.org"},
		{"SRS0=HHH=TT=origin.example=alice@forwarder.example", "alice@origin.example"},
		{"SRS0=abcd=Q5=origin.example=alice+tag@forwarder.example", "alice@origin.example"},
		{"SRS1=XXXX=fwd1.example==HHHH=TT=origin.example=bob@fwd2.example", "bob@origin.example"},
		{"bounce-12345-67890@lists.example.org", "bounce-#-#@lists.example.org"},
		{"owner-list-42@example.org", "owner-list-#@example.org"},
		{"bounce.3f9a8c7d6e5b4a39@mailer.example", "bounce.#@mailer.example"},
		{"john2000@example.org", "john2000@example.org"}, // a name, not a counter
		{"deadbeef@example.org", "deadbeef@example.org"}, // short, no digits
		{"MAILER-DAEMON", "mailer-daemon"},
		{"srs0=broken@forwarder.example", "srs0=broken@forwarder.example"}, // not SRS: kept
	}
	for _, tt := range tests {
		if got := NormalizeSender(tt.in); got != tt.want {
			t.Errorf("NormalizeSender(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnwrapSender(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Alice+News@Example.ORG", "alice+news@example.org"}, // only BATV and SRS go
		{"prvs=1234abcdef=alice@example.org", "alice@example.org"},
		{"msprvs1=17623Tb4eB4Ht=bounces-123@example.org", "bounces-123@example.org"},
		{"btv1==0957d6f5b0d==alice@example.org", "alice@example.org"},
		{"SRS0=HHH=TT=origin.example=alice@forwarder.example", "alice@origin.example"},
		{"SRS1=XXXX=fwd1.example==HHHH=TT=origin.example=prvs=12=bob@fwd2.example", "bob@origin.example"},
		{"prvs=@example.org", "prvs=@example.org"}, // no user after the tag: kept
		{"MAILER-DAEMON", "mailer-daemon"},
	}
	for _, tt := range tests {
		if got := UnwrapSender(tt.in); got != tt.want {
			t.Errorf("UnwrapSender(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestKeyerClient(t *testing.T) {
	tests := []struct {
		keyer Keyer
		addr  string
		want  string
	}{
		{DefaultKeyer, "192.0.2.77", "192.0.2.0/24"},
		{DefaultKeyer, "::ffff:192.0.2.77", "192.0.2.0/24"},
		{DefaultKeyer, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{DefaultKeyer, "2001:DB8::1", "2001:db8::/64"},
		{Keyer{IPv4Prefix: 16, IPv6Prefix: 48}, "198.51.100.9", "198.51.0.0/16"},
		{Keyer{IPv4Prefix: 16, IPv6Prefix: 48}, "2001:db8:1:2::1", "2001:db8:1::/48"},
		{Keyer{ByHost: true}, "192.0.2.77", "192.0.2.77"},
		{Keyer{ByHost: true}, "2001:db8::1", "2001:db8::1"},
		{Keyer{IPv4Prefix: 32, IPv6Prefix: 128}, "192.0.2.77", "192.0.2.77"},
	}
	for _, tt := range tests {
		if got := tt.keyer.Client(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("%+v.Client(%s) = %q, want %q", tt.keyer, tt.addr, got, tt.want)
		}
	}
}

func TestKeyerKey(t *testing.T) {
	k := DefaultKeyer.Key(netip.MustParseAddr("192.0.2.1"), "prvs=1234567890=Alice@Example.org", "Bob@Example.NET")
	want := Key{Client: "192.0.2.0/24", Sender: "alice@example.org", Recipient: "bob@example.net"}
	if k != want {
		t.Errorf("Key = %+v, want %+v", k, want)
	}
	// The null sender is a sender of its own.
	if k := DefaultKeyer.Key(netip.MustParseAddr("192.0.2.1"), "", "bob@example.net"); k.Sender != "" {
		t.Errorf("null sender keyed as %q", k.Sender)
	}
}
