package e2e

import (
	"strconv"
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT01FirstDeliveryGreylisted: the first delivery of a triplet is
// deferred at RCPT with 451 4.7.1 and the wait in seconds, for IPv4 and IPv6
// clients and for the null sender, and nothing is queued.
func TestT01FirstDeliveryGreylisted(t *testing.T) {
	t.Parallel()
	gm, pf := system(t)
	tests := []struct {
		name   string
		client string
		from   string
	}{
		{"ipv4", "192.0.2.11", "alice@client.example"},
		{"ipv6", "2001:db8:11::1", "alice@client.example"},
		{"null sender", "198.51.100.11", ""},
	}
	for i, tt := range tests {
		rcpt := "t01-" + strconv.Itoa(i) + "@" + harness.Domain
		res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: tt.client, From: tt.from, To: []string{rcpt}})
		if res.Mail.Code != 250 || len(res.Rcpt) != 1 {
			t.Fatalf("%s: %+v", tt.name, res)
		}
		wait := greylisted(t, tt.name, res.Rcpt[0])
		if res.Data.Code != 0 {
			t.Errorf("%s: DATA sent after every recipient was deferred: %v", tt.name, res.Data)
		}
		rec := decision(t, gm, rcpt, 1, "greylist", "new")
		if rec["client"] != tt.client || rec["sender"] != "<"+tt.from+">" || rec["wait"] != strconv.Itoa(wait) {
			t.Errorf("%s: logged %v, want client=%s sender=<%s> wait=%d", tt.name, rec, tt.client, tt.from, wait)
		}
	}
}
