package e2e

import (
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT14ReplyText: the --greylist-text template reaches the client intact
// through Postfix, placeholders filled, '%' included (the milter protocol
// has Postfix drop a lone '%', so greymilter must double it).
func TestT14ReplyText(t *testing.T) {
	t.Parallel()
	_, pf := system(t, "--greylist-text", "Greylisted {SENDER} to {RECIPIENT} from {CLIENT}: 100% sure, retry in {SECONDS}s")
	rcpt := "t14@" + harness.Domain
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "192.0.2.14", From: "user%relay@client.example", To: []string{rcpt}})
	want := "Greylisted user%relay@client.example to " + rcpt + " from 192.0.2.14: 100% sure, retry in 3s"
	if r := res.Rcpt[0]; r.Code != 451 || r.Enhanced != "4.7.1" || r.Text != want {
		t.Errorf("reply %v, want 451 4.7.1 %s", r, want)
	}
}
