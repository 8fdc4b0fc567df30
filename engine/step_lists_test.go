package engine

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/lists"
)

func TestListsStep(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wc := file("wc", "# friends\n192.0.2.0/24\nfriend.example\n")
	wr := file("wr", "postmaster@\n")
	ws := file("ws", "news@shop.example\n/^msprvs1=[a-z0-9]+=raw@/\n")
	bc := file("bc", "192.0.2.66\n")
	bs := file("bs", "spammer@shop.example\n")
	set, err := lists.Load(lists.Config{
		WhitelistClients: []string{wc}, WhitelistRecipients: []string{wr}, WhitelistSenders: []string{ws},
		BlacklistClients: []string{bc}, BlacklistSenders: []string{bs},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                  string
		text                  string // BlacklistText
		addr, client          string
		sender, recipient     string
		action                Action
		reply, reason, listed string // reply for Reject only
		list                  string // FILE:LINE in the log
	}{
		{name: "unlisted goes on to the next step", addr: "203.0.113.5", client: "mx.other.example", sender: "a@other.example", recipient: "b@here.example",
			action: Defer, reason: "new"},
		{name: "whitelisted client network", addr: "192.0.2.10", sender: "a@other.example", recipient: "b@here.example",
			action: Pass, reason: "whitelist", listed: "client", list: wc + ":2"},
		{name: "whitelisted client name", addr: "203.0.113.5", client: "mail.friend.example", sender: "a@other.example", recipient: "b@here.example",
			action: Pass, reason: "whitelist", listed: "client", list: wc + ":3"},
		{name: "whitelisted recipient", addr: "203.0.113.5", sender: "a@other.example", recipient: "postmaster@here.example",
			action: Pass, reason: "whitelist", listed: "recipient", list: wr + ":1"},
		{name: "whitelisted sender", addr: "203.0.113.5", sender: "news@shop.example", recipient: "b@here.example",
			action: Pass, reason: "whitelist", listed: "sender", list: ws + ":1"},
		{name: "blacklisted client beats whitelisted network", addr: "192.0.2.66", sender: "a@other.example", recipient: "postmaster@here.example",
			action: Reject, reply: "550 5.7.1 Rejected by local policy: 192.0.2.66 <a@other.example> is blacklisted", reason: "blacklist", listed: "client", list: bc + ":1"},
		{name: "whitelisted sender behind a BATV tag", addr: "203.0.113.5", sender: "prvs=0011aabb=news@shop.example", recipient: "b@here.example",
			action: Pass, reason: "whitelist", listed: "sender", list: ws + ":1"},
		{name: "whitelisted sender forwarded with SRS", addr: "203.0.113.5", sender: "SRS0=HHH=TT=shop.example=news@forwarder.example", recipient: "b@here.example",
			action: Pass, reason: "whitelist", listed: "sender", list: ws + ":1"},
		{name: "blacklisted sender behind a BATV tag", addr: "192.0.2.10", sender: "prvs=0011aabb=spammer@shop.example", recipient: "b@here.example",
			action: Reject, reply: "550 5.7.1 Rejected by local policy: 192.0.2.10 <prvs=0011aabb=spammer@shop.example> is blacklisted", reason: "blacklist", listed: "sender", list: bs + ":1"},
		{name: "blacklisted sender behind msprvs1 and btv1 tags", addr: "203.0.113.5", sender: "btv1==0957d6f5b0d==Spammer@Shop.Example", recipient: "b@here.example",
			action: Reject, reply: "550 5.7.1 Rejected by local policy: 203.0.113.5 <btv1==0957d6f5b0d==Spammer@Shop.Example> is blacklisted", reason: "blacklist", listed: "sender", list: bs + ":1"},
		{name: "blacklisted sender inside SRS1", addr: "203.0.113.5", sender: "SRS1=XXXX=fwd1.example==HHHH=TT=shop.example=spammer@fwd2.example", recipient: "b@here.example",
			action: Reject, reply: "550 5.7.1 Rejected by local policy: 203.0.113.5 <SRS1=XXXX=fwd1.example==HHHH=TT=shop.example=spammer@fwd2.example> is blacklisted", reason: "blacklist", listed: "sender", list: bs + ":1"},
		{name: "raw BATV address listed as written", addr: "203.0.113.5", sender: "msprvs1=17623Tb4eB4Ht=raw@shop.example", recipient: "b@here.example",
			action: Pass, reason: "whitelist", listed: "sender", list: ws + ":2"},
		{name: "blacklisted sender, own text", text: "Go away, {SENDER} from {CLIENT}", addr: "192.0.2.10", sender: "spammer@shop.example", recipient: "b@here.example",
			action: Reject, reply: "550 5.7.1 Go away, spammer@shop.example from 192.0.2.10", reason: "blacklist", listed: "sender", list: bs + ":1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			e := newTestEngine(&buf, Options{}, &Lists{Set: set, BlacklistText: c.text}, stepFunc{"greylist", deferStep})
			v := e.Decide(context.Background(), &Request{
				ClientAddr: netip.MustParseAddr(c.addr), ClientName: c.client, Sender: c.sender, Recipient: c.recipient,
			})
			if v.Action != c.action || v.Reason != c.reason {
				t.Fatalf("verdict %+v, want %v %s", v, c.action, c.reason)
			}
			if c.action == Reject && v.Reply() != c.reply {
				t.Errorf("reply %q, want %q", v.Reply(), c.reply)
			}
			if c.list == "" {
				if strings.Contains(buf.String(), "list=") {
					t.Errorf("log %q names a list, want none", buf.String())
				}
				return
			}
			if v.Step != "lists" {
				t.Errorf("step %q, want lists", v.Step)
			}
			for _, want := range []string{"list=" + c.list, "listed=" + c.listed} {
				if !strings.Contains(buf.String(), want) {
					t.Errorf("log %q lacks %q", buf.String(), want)
				}
			}
		})
	}
}
