package engine

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/resolver"
)

// nameStep records the client name later steps see.
type nameStep struct{ name string }

func (*nameStep) Name() string { return "name" }
func (s *nameStep) Run(_ context.Context, d *Decision) (bool, error) {
	s.name = d.Req.ClientName
	d.Verdict = Verdict{Action: Pass, Reason: "last"}
	return true, nil
}

func TestConfirmName(t *testing.T) {
	srv := dnstest.Start(t, "testdata/names.zone")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, client, verified, claimed string
		want                            string // the name later steps see
		log                             string
	}{
		{"MTA verified it", "192.0.2.25", "mail-forged.big.test", "", "mail-forged.big.test", ""},
		{"claimed, does not forward-confirm", "192.0.2.25", "", "mail-forged.big.test", "", "name_check=not-confirmed"},
		{"claimed, confirmed by lookup", "192.0.2.26", "", "mail-real.big.test", "mail-real.big.test", "name_check=confirmed"},
		// The PTR name, not the claim, is what the lookup confirms.
		{"claim differs from the PTR", "192.0.2.26", "", "mail.other.test", "mail-real.big.test", "name_check=confirmed"},
		{"claimed, no PTR", "192.0.2.27", "", "mail.big.test", "", "name_check=not-confirmed"},
		{"claimed, lookup fails", "192.0.2.28", "", "mail.big.test", "", "name_check=lookup-failed"},
		{"no name at all", "192.0.2.26", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := &nameStep{}
			var buf bytes.Buffer
			e := newTestEngine(&buf, Options{}, &ConfirmName{Resolver: res}, last)
			e.Decide(context.Background(), &Request{ClientAddr: netip.MustParseAddr(tt.client), ClientName: tt.verified, ClaimedName: tt.claimed})
			if last.name != tt.want {
				t.Errorf("later steps see name %q, want %q", last.name, tt.want)
			}
			if tt.log != "" && !strings.Contains(buf.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, buf.String())
			}
		})
	}
}
