package checks

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestDynamicDefaultPatterns(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.34")
	v6 := netip.MustParseAddr("2001:db8::7")
	tests := []struct {
		name string
		addr netip.Addr
		dyn  bool
		why  string
	}{
		// The client's address in the name.
		{"192-0-2-34.example.net", v4, true, "address:octets"},
		{"192.0.2.34.example.net", v4, true, "address:octets"},
		{"ip192_000_002_034.example.net", v4, true, "address:octets"},
		{"34.2.0.192.example.net", v4, true, "address:reversed"},
		{"x34-2-0-192.example.net", v4, true, "address:reversed"},
		{"c-0-2-34.hsd1.example.net", v4, true, "address:partial"},
		{"h34-2-0.example.net", v4, true, "address:partial"},
		{"host192000002034.example.net", v4, true, "address:padded"},
		{"034002000192.example.net", v4, true, "address:padded"},
		{"pC0000222.dip0.example.de", v4, true, "address:hex"},
		{"h3221226018.example.net", v4, true, "address:number"},
		{"2001-db8--7.example.net", v6, true, "address:dashed"},
		{"host-20010db8000000000000000000000007.example.net", v6, true, "address:hex"},
		{"cust-0000-0000-0000-0007.v6.example.net", v6, true, "address:hex"},
		{"192-0-2-34.example.net", netip.MustParseAddr("::ffff:192.0.2.34"), true, "address:octets"},
		// Words.
		{"adsl-pool12.example.net", v4, true, "word:adsl"},
		{"ppp0.example.net", v4, true, "word:ppp"},
		{"Dialup.Example.NET.", v4, true, "word:dialup"},
		{"abc.dyn.example.net", v4, true, "word:dyn"},
		{"cpe-88.res.example.com", v6, true, "word:cpe"},
		// Static wins.
		{"mail-192-0-2-34.example.net", v4, false, "static:mail"},
		{"static-34-2-0-192.dsl.example.net", v4, false, "static:static"},
		{"mx1.dyn.example.net", v4, false, "static:mx"},
		{"smtp-out.pool.example.net", v4, false, "static:smtp"},
		{"mail-wm1-f54.google.com", v4, false, "static:mail"},
		// Nothing to see.
		{"www.example.net", v4, false, "clean"},
		{"1-2-3-4.example.net", v4, false, "clean"},   // not the client's address
		{"shop-2-34.example.net", v4, false, "clean"}, // two octets are too few
		{"server6.example.net", v6, false, "static:server"},
		{"www6.example.net", v6, false, "clean"},
		{"dynamo.example.net", v4, false, "clean"}, // words, not substrings
	}
	p := DefaultPatterns()
	for _, tt := range tests {
		dyn, why := p.Match(tt.name, tt.addr)
		if dyn != tt.dyn || why != tt.why {
			t.Errorf("Match(%q, %s) = %v %q, want %v %q", tt.name, tt.addr, dyn, why, tt.dyn, tt.why)
		}
	}
}

func TestDynamicScore(t *testing.T) {
	addr := netip.MustParseAddr("192.0.2.34")
	tests := []struct {
		name   string
		score  int
		reason string
	}{
		{"dsl-192-0-2-34.example.net", 2, "address:octets"},
		{"mail.example.net", 0, "static:mail"},
		{"", 0, "no-name"},
	}
	for _, tt := range tests {
		r := Dynamic(Input{Addr: addr, Name: tt.name}, nil, DefaultScores)
		if r.Check != "dynamic" || r.Score != tt.score || r.Reason != tt.reason {
			t.Errorf("Dynamic(%q) = %+v, want %d %s", tt.name, r, tt.score, tt.reason)
		}
	}
}

func TestUserPatterns(t *testing.T) {
	file := writeFile(t, "patterns", `
# a provider of ours names its gateways gwNN
dynamic /^gw\d+\.isp\.example$/
dynamic nomad          # a word
static  hostedmail
static  /^out\d+\.cable\.example$/
`)
	p, err := LoadPatterns(true, file)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("198.51.100.1")
	tests := []struct {
		name string
		dyn  bool
		why  string
	}{
		{"gw12.isp.example", true, `regexp:/^gw\d+\.isp\.example$/`},
		{"GW12.ISP.EXAMPLE", true, `regexp:/^gw\d+\.isp\.example$/`},
		{"nomad7.example", true, "word:nomad"},
		{"pool.hostedmail.example", false, "static:hostedmail"},
		{"out3.cable.example", false, `static:/^out\d+\.cable\.example$/`},
		{"a.cable.example", true, "word:cable"}, // the defaults are still there
	}
	for _, tt := range tests {
		dyn, why := p.Match(tt.name, addr)
		if dyn != tt.dyn || why != tt.why {
			t.Errorf("Match(%q) = %v %q, want %v %q", tt.name, dyn, why, tt.dyn, tt.why)
		}
	}

	// Without the defaults only the file's patterns are left.
	p, err = LoadPatterns(false, file)
	if err != nil {
		t.Fatal(err)
	}
	if dyn, why := p.Match("a.cable.example", addr); dyn {
		t.Errorf("without defaults, a.cable.example: %v %q", dyn, why)
	}
	if dyn, _ := p.Match("gw1.isp.example", addr); !dyn {
		t.Errorf("without defaults, gw1.isp.example not dynamic")
	}
}

func TestPatternErrors(t *testing.T) {
	tests := []struct {
		text, want string
	}{
		{"dynamic dsl\nsometimes dsl\n", `f:2: unknown kind "sometimes"`},
		{"dynamic\n", `f:1: want "dynamic PATTERN"`},
		{"dynamic a b\n", `f:1: want "dynamic PATTERN"`},
		{"\n\nstatic /a(/\n", "f:3: error parsing regexp"},
		{"static /open\n", `f:1: regexp "/open": want /REGEXP/`},
		{"static //\n", `f:1: regexp "//": want /REGEXP/`},
		{"dynamic 3g\n", `f:1: word "3g" would never match`},
		{"dynamic dyn-ip\n", `f:1: word "dyn-ip" would never match`},
	}
	for _, tt := range tests {
		_, err := ParsePatterns(strings.NewReader(tt.text), "f")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePatterns(%q) = %v, want an error with %q", tt.text, err, tt.want)
		}
	}
	if _, err := LoadPatterns(true, writeFile(t, "bad", "# ok\n\ndynamic /[/\n")); err == nil || !strings.Contains(err.Error(), "/bad:3: ") {
		t.Errorf("LoadPatterns of a bad file: %v, want FILE:3", err)
	}
	if _, err := LoadPatterns(true, t.TempDir()+"/missing"); err == nil {
		t.Error("LoadPatterns of a missing file: no error")
	}
}

func TestSplitWords(t *testing.T) {
	tests := map[string][]string{
		"adsl-dyn12.pool.example.net": {"adsl", "dyn", "12", "pool", "example", "net"},
		"p5b0c1d2e.dip0":              {"p", "5", "b", "0", "c", "1", "d", "2", "e", "dip", "0"},
		"--a__b..":                    {"a", "b"},
		"":                            nil,
	}
	for in, want := range tests {
		if got := splitWords(in); !slices.Equal(got, want) {
			t.Errorf("splitWords(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSetPatterns(t *testing.T) {
	c := NewChecker(DefaultScores, nil, nil)
	in := Input{Addr: netip.MustParseAddr("198.51.100.1"), Name: "gw7.isp.example", Helo: "gw7.isp.example"}
	if got := Sum(c.Run(t.Context(), in)); got != 0 {
		t.Fatalf("before: score %d, want 0", got)
	}
	p, err := ParsePatterns(strings.NewReader("dynamic gw\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	c.SetPatterns(p)
	if got := Sum(c.Run(t.Context(), in)); got != DefaultScores.Dynamic {
		t.Fatalf("after: score %d, want %d", got, DefaultScores.Dynamic)
	}
}
