package checks

import (
	"net/netip"
	"testing"
)

func TestCheckerReverseLookup(t *testing.T) {
	r, srv := newResolver(t, "testdata/reverse.zone")
	c := NewChecker(DefaultScores, nil, r)
	tests := []struct {
		desc    string
		addr    string
		name    string // as the MTA gave it
		helo    string
		want    map[string]string // check -> Result.String()
		lookups bool
	}{
		{"the MTA's name is trusted without a lookup", "192.0.2.99", "mail.example.org", "mail.example.org",
			map[string]string{"rdns": "0:verified", "helo": "0:equal", "dynamic": "0:static:mail"}, false},
		{"forward-confirmed by our lookup", "192.0.2.10", "", "mail.example.test",
			map[string]string{"rdns": "0:verified-by-lookup", "helo": "0:equal", "dynamic": "0:static:mail"}, true},
		{"IPv6, forward-confirmed", "2001:db8::10", "", "[IPv6:2001:db8::10]",
			map[string]string{"rdns": "0:verified-by-lookup", "helo": "+1:literal", "dynamic": "0:static:mail"}, true},
		{"unverified generic name still counts as dynamic", "192.0.2.11", "", "dsl-192-0-2-11.dyn.example.test",
			map[string]string{"rdns": "+1:unverified", "helo": "+2:no-client-name", "dynamic": "+2:address:octets"}, true},
		{"unverified, clean", "192.0.2.12", "", "host12.example.test",
			map[string]string{"rdns": "+1:unverified", "helo": "+2:no-client-name", "dynamic": "0:clean"}, true},
		{"no PTR", "192.0.2.13", "", "[192.0.2.13]",
			map[string]string{"rdns": "+1:no-ptr", "helo": "+1:literal", "dynamic": "0:no-name"}, true},
		{"forward lookup fails", "192.0.2.14", "", "x.example.test",
			map[string]string{"rdns": "+1:lookup-failed", "dynamic": "+2:word:dsl"}, true},
		{"reverse lookup fails", "192.0.2.15", "", "x.example.test",
			map[string]string{"rdns": "+1:lookup-failed", "dynamic": "0:no-name"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			srv.ResetCounts()
			in := Input{Addr: netip.MustParseAddr(tt.addr), Name: tt.name, Helo: tt.helo, Sender: "a@example.org", Recipient: "b@example.net"}
			results := c.Run(t.Context(), in)
			got := map[string]string{}
			for _, r := range results {
				got[r.Check] = r.String()
			}
			for check, want := range tt.want {
				if got[check] != want {
					t.Errorf("%s = %s, want %s (all: %v)", check, got[check], want, results)
				}
			}
			if got["sender"] != "0:differs" {
				t.Errorf("sender = %s", got["sender"])
			}
			if n := srv.Total(); (n > 0) != tt.lookups {
				t.Errorf("%d DNS queries, want lookups %v", n, tt.lookups)
			}
		})
	}
}

func TestCheckerWithoutResolver(t *testing.T) {
	c := NewChecker(DefaultScores, nil, nil)
	results := c.Run(t.Context(), Input{Addr: netip.MustParseAddr("192.0.2.10"), Helo: "mail.example.test"})
	if results[0].String() != "+1:unknown" {
		t.Errorf("rdns = %s, want +1:unknown", results[0])
	}
}
