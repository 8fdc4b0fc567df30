package dnsbl

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseZone(t *testing.T) {
	tests := []struct {
		spec, name, accept string
		bad                bool
	}{
		{spec: "zen.example", name: "zen.example"},
		{spec: " Zen.Example. ", name: "zen.example"},
		{spec: "zen.example=127.0.0.2-127.0.0.11", name: "zen.example", accept: "[127.0.0.2-127.0.0.11]"},
		{spec: "zen.example=127.0.0.2, 127.0.0.4,127.0.0.8/29", name: "zen.example", accept: "[127.0.0.2 127.0.0.4 127.0.0.8-127.0.0.15]"},
		{spec: "zen.example=127.0.0.9/29", name: "zen.example", accept: "[127.0.0.8-127.0.0.15]"},
		{spec: "", bad: true},
		{spec: "=127.0.0.2", bad: true},
		{spec: "bad zone", bad: true},
		{spec: "zen.example=", bad: true},
		{spec: "zen.example=127.0.0.300", bad: true},
		{spec: "zen.example=127.0.0.11-127.0.0.2", bad: true},
		{spec: "zen.example=127.0.0.2-::1", bad: true},
		{spec: "zen.example=127.0.0.0/33", bad: true},
	}
	for _, tt := range tests {
		z, err := ParseZone(tt.spec)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseZone(%q) accepted it", tt.spec)
			}
			continue
		}
		if err != nil || z.Name != tt.name || (tt.accept != "" && fmt.Sprint(z.Accept) != tt.accept) || (tt.accept == "" && z.Accept != nil) {
			t.Errorf("ParseZone(%q) = %q %v, %v", tt.spec, z.Name, z.Accept, err)
		}
	}
}

func TestZoneCounts(t *testing.T) {
	plain, _ := ParseZone("x.example")
	filtered, _ := ParseZone("x.example=127.0.0.2-127.0.0.11,127.1.0.0/16")
	tests := []struct {
		addr            string
		plain, filtered bool
	}{
		{"127.0.0.2", true, true},
		{"127.0.0.11", true, true},
		{"127.0.0.12", true, false},
		{"127.1.2.3", true, true},
		{"10.0.0.2", false, false},
		{"127.0.0.1", false, false},
		{"127.0.0.255", false, false}, // dnswl.org: blocked
		{"127.0.0.254", true, false},
		{"127.255.255.252", false, false},
		{"127.255.255.254", false, false},
		{"127.255.255.255", false, false},
		{"127.255.255.251", true, false},
		{"::ffff:127.0.0.2", true, true},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := plain.Counts(a); got != tt.plain {
			t.Errorf("plain.Counts(%s) = %v", tt.addr, got)
		}
		if got := filtered.Counts(a); got != tt.filtered {
			t.Errorf("filtered.Counts(%s) = %v", tt.addr, got)
		}
	}
}

func TestParseReply(t *testing.T) {
	zones := mustZones(t, "a.example", "b.example", "c.example", "d.example")
	for _, spec := range []string{
		"a.example=554 5.7.1 Listed by A, see https://a.example/{ADDR}",
		"B.Example.=550 Listed by B",
		"c.example=Listed by C",
		"d.example=451 4.7.1 Try later",
	} {
		if err := ParseReply(spec, zones); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"554 5.7.1 Listed by A, see https://a.example/{ADDR}",
		"550  Listed by B",
		"0  Listed by C",
		"451 4.7.1 Try later",
	}
	for i, z := range zones {
		if got := fmt.Sprintf("%d %s %s", z.Code, z.ECode, z.Text); got != want[i] {
			t.Errorf("%s: %q, want %q", z.Name, got, want[i])
		}
	}
	for _, bad := range []string{"no-equals", "other.example=550 x"} {
		if err := ParseReply(bad, zones); err == nil {
			t.Errorf("ParseReply(%q) accepted it", bad)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"any", "any"}, {"ALL", "all"}, {"majority", "majority"}, {"2", "threshold 2"},
	} {
		p, err := ParsePolicy(tt.in)
		if err != nil || p.String() != tt.want {
			t.Errorf("ParsePolicy(%q) = %v, %v", tt.in, p, err)
		}
	}
	for _, bad := range []string{"", "most", "0", "-1"} {
		if _, err := ParsePolicy(bad); err == nil {
			t.Errorf("ParsePolicy(%q) accepted it", bad)
		}
	}
}

func TestPolicySettled(t *testing.T) {
	tests := []struct {
		p                    Policy
		hits, clean, pending int
		listed, certain      bool
	}{
		{Any, 1, 0, 2, true, true},
		{Any, 0, 2, 1, false, false},
		{Any, 0, 3, 0, false, true},
		{All, 0, 1, 2, false, true},
		{All, 2, 0, 1, true, false},
		{All, 0, 0, 0, false, true},
		{Majority, 2, 0, 1, true, true},
		{Majority, 1, 0, 2, true, false},
		{Majority, 0, 2, 1, false, true},
		{Majority, 1, 1, 1, false, false},
		{Threshold(2), 2, 0, 3, true, true},
		{Threshold(2), 0, 2, 1, false, true},
		{Threshold(2), 1, 1, 1, false, false},
	}
	for _, tt := range tests {
		listed, certain := tt.p.settled(tt.hits, tt.clean, tt.pending)
		if listed != tt.listed || certain != tt.certain {
			t.Errorf("%v hits=%d clean=%d pending=%d: listed=%v certain=%v, want %v %v",
				tt.p, tt.hits, tt.clean, tt.pending, listed, certain, tt.listed, tt.certain)
		}
	}
}

func TestTXTText(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain reason", "plain reason"},
		{`quoted \"x\" and \\`, `quoted "x" and \`},
		{`line\010break\013`, "line break "},
		{`caf\195\169`, "caf??"},
		{`tab\009end\`, "tab end\\"},
		{strings.Repeat("x", 500), strings.Repeat("x", maxTXT)},
	} {
		if got := smtpText(unescapeTXT(tt.in), maxTXT); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}
