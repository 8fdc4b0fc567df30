package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/resolver"
)

// dnsLists serves testdata/dnsbl.zone and returns a function making lists
// of its zones through one resolver.
func dnsLists(tb testing.TB, cacheSize int) func(policy dnsbl.Policy, specs ...string) *dnsbl.List {
	tb.Helper()
	srv := dnstest.Start(tb, "testdata/dnsbl.zone", "testdata/txt.zone")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, CacheSize: cacheSize})
	if err != nil {
		tb.Fatal(err)
	}
	return func(policy dnsbl.Policy, specs ...string) *dnsbl.List {
		zones := make([]dnsbl.Zone, len(specs))
		for i, s := range specs {
			if zones[i], err = dnsbl.ParseZone(s); err != nil {
				tb.Fatal(err)
			}
		}
		return dnsbl.NewList(res, policy, nil, zones...)
	}
}

// lastStep passes, recording what the DNS steps left for later steps.
type lastStep struct {
	reached       bool
	forceGreylist bool
}

func (*lastStep) Name() string { return "last" }
func (s *lastStep) Run(_ context.Context, d *Decision) (bool, error) {
	s.reached, s.forceGreylist = true, d.ForceGreylist
	d.Verdict = Verdict{Action: Pass, Reason: "last"}
	return true, nil
}

func TestDNSSteps(t *testing.T) {
	lists := dnsLists(t, 0)
	withReply := lists(dnsbl.All, "bl1.test", "bl2.test")
	if err := dnsbl.ParseReply("bl2.test=554 5.7.0 {ADDR} is on bl2, see https://bl2.test/", withReply.Zones()); err != nil {
		t.Fatal(err)
	}
	txtReply := lists(dnsbl.Any, "bl2.test", "txt.test")
	if err := dnsbl.ParseReply("txt.test=554 5.7.1 txt.test says: {TXT}", txtReply.Zones()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		wl     *dnsbl.List
		bl     *DNSBL
		client string
		// The verdict, as "action reason step", and what it says.
		want, reply, header string
		reachedLast, force  bool
		log                 []string // in the decision's log line
	}{
		{
			// "all" waits for every list, so the reply names both.
			name: "listed client rejected", client: "192.0.2.1",
			bl:   &DNSBL{List: lists(dnsbl.All, "bl1.test", "bl2.test")},
			want: "reject dnsbl dnsbl", reply: "550 5.7.1 Rejected. Address 192.0.2.1 found in bl1.test, bl2.test",
			log: []string{"dnsbl=\"bl1.test(127.0.0.2) bl2.test(127.0.0.4)\""},
		},
		{
			name: "IPv6 client", client: "2001:db8::1",
			bl:   &DNSBL{List: lists(dnsbl.Any, "bl1.test")},
			want: "reject dnsbl dnsbl", reply: "550 5.7.1 Rejected. Address 2001:db8::1 found in bl1.test",
		},
		{
			name: "step's own reply", client: "192.0.2.2",
			bl:   &DNSBL{List: lists(dnsbl.Any, "bl1.test"), Code: 554, ECode: "5.7.0", Text: "No mail from {ADDR} ({DNSBL}) to {RECIPIENT}"},
			want: "reject dnsbl dnsbl", reply: "554 5.7.0 No mail from 192.0.2.2 (bl1.test) to b@example.net",
		},
		{
			name: "zone's own reply", client: "192.0.2.1",
			bl:   &DNSBL{List: withReply, Text: "step text"},
			want: "reject dnsbl dnsbl", reply: "554 5.7.0 192.0.2.1 is on bl2, see https://bl2.test/",
		},
		{
			name: "policy not met", client: "192.0.2.2",
			bl:   &DNSBL{List: lists(dnsbl.All, "bl1.test", "bl2.test")},
			want: "pass last last", reachedLast: true,
		},
		{
			name: "answer filter", client: "192.0.2.1",
			bl:   &DNSBL{List: lists(dnsbl.Threshold(3), "bl1.test", "bl2.test", "bl3.test=127.0.0.2-127.0.0.11")},
			want: "pass last last", reachedLast: true,
		},
		{
			name: "greylist action", client: "192.0.2.1",
			bl:   &DNSBL{List: lists(dnsbl.Any, "bl1.test"), Action: DNSBLGreylist},
			want: "pass last last", reachedLast: true, force: true,
			log: []string{"dnsbl_action=greylist"},
		},
		{
			name: "mark action", client: "192.0.2.1",
			bl:   &DNSBL{List: lists(dnsbl.All, "bl1.test", "bl2.test", "bl3.test"), Action: DNSBLMark},
			want: "pass last last", reachedLast: true, force: true, header: "X-RBL-Warning: 192.0.2.1 listed in bl1.test, bl2.test, bl3.test",
			log: []string{"dnsbl_action=mark"},
		},
		{
			name: "DNSWL passes before the DNSBL", client: "192.0.2.1",
			wl:   lists(dnsbl.Threshold(1), "wl.test"),
			bl:   &DNSBL{List: lists(dnsbl.Any, "bl1.test")},
			want: "pass dnswl dnswl", log: []string{"dnswl=wl.test"},
		},
		{
			name: "DNSWL threshold not reached", client: "192.0.2.3",
			wl:   lists(dnsbl.Threshold(2), "wl.test", "bl1.test"),
			want: "pass last last", reachedLast: true,
		},
		{
			name: "abstaining list is logged", client: "192.0.2.2",
			bl:   &DNSBL{List: lists(dnsbl.All, "bl1.test", "slow.test")},
			want: "reject dnsbl dnsbl", reply: "550 5.7.1 Rejected. Address 192.0.2.2 found in bl1.test",
			log: []string{"dnsbl_abstained=\"slow.test: ", "deadline exceeded"},
		},
		// {TXT} is the list's own reason, its TXT record for the listing.
		{
			name: "TXT reason", client: "192.0.2.1",
			bl:   &DNSBL{List: lists(dnsbl.Any, "txt.test"), Text: "Blocked: {TXT}"},
			want: "reject dnsbl dnsbl", reply: "550 5.7.1 Blocked: Listed for spam, see https://txt.test/q?ip=192.0.2.1",
		},
		{
			name: "no TXT record", client: "192.0.2.2",
			bl:   &DNSBL{List: lists(dnsbl.Any, "txt.test"), Text: "Blocked: {TXT}"},
			want: "reject dnsbl dnsbl", reply: "550 5.7.1 Blocked: 192.0.2.2 listed in txt.test",
		},
		{
			name: "TXT cleaned for SMTP", client: "192.0.2.3",
			bl:   &DNSBL{List: lists(dnsbl.Any, "txt.test"), Text: "{TXT}"},
			want: "reject dnsbl dnsbl", reply: "550 5.7.1 Open proxy;  see https://txt.test/q?ip=192.0.2.3",
		},
		{
			name: "TXT in a zone's own reply", client: "192.0.2.1",
			bl:   &DNSBL{List: txtReply},
			want: "reject dnsbl dnsbl", reply: "554 5.7.1 txt.test says: Listed for spam, see https://txt.test/q?ip=192.0.2.1",
		},
		{
			name: "client without an address", client: "",
			bl:   &DNSBL{List: lists(dnsbl.Any, "bl1.test")},
			want: "pass last last", reachedLast: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var steps []Step
			if tt.wl != nil {
				steps = append(steps, &DNSWL{List: tt.wl})
			}
			if tt.bl != nil {
				steps = append(steps, tt.bl)
			}
			last := &lastStep{}
			steps = append(steps, last)
			var buf bytes.Buffer
			e := newTestEngine(&buf, Options{}, steps...)
			r := *req
			r.ClientAddr = netip.Addr{}
			if tt.client != "" {
				r.ClientAddr = netip.MustParseAddr(tt.client)
			}
			v := e.Decide(context.Background(), &r)
			if got := v.Action.String() + " " + v.Reason + " " + v.Step; got != tt.want {
				t.Errorf("verdict %q, want %q", got, tt.want)
			}
			if tt.reply != "" && v.Reply() != tt.reply {
				t.Errorf("reply %q, want %q", v.Reply(), tt.reply)
			}
			var headers []string
			for _, h := range v.Headers {
				headers = append(headers, h.Name+": "+h.Value)
			}
			if got := strings.Join(headers, "\n"); got != tt.header {
				t.Errorf("headers %q, want %q", got, tt.header)
			}
			if last.reached != tt.reachedLast || last.forceGreylist != tt.force {
				t.Errorf("last step reached=%v force=%v, want %v %v", last.reached, last.forceGreylist, tt.reachedLast, tt.force)
			}
			for _, s := range tt.log {
				if !strings.Contains(buf.String(), s) {
					t.Errorf("log lacks %q:\n%s", s, buf.String())
				}
			}
		})
	}
}

func TestParseDNSBLAction(t *testing.T) {
	for _, s := range []string{"reject", "greylist", "mark"} {
		a, err := ParseDNSBLAction(s)
		if err != nil || a.String() != s {
			t.Errorf("ParseDNSBLAction(%q) = %v, %v", s, a, err)
		}
	}
	if _, err := ParseDNSBLAction("drop"); err == nil {
		t.Error("ParseDNSBLAction(drop) accepted it")
	}
}

// BenchmarkDNSBLDecision makes whole decisions through a DNSBL step with
// three lists, with a warm resolver cache and with none.
func BenchmarkDNSBLDecision(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{"warm", 0}, {"nocache", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			lists := dnsLists(b, bc.cache)
			step := &DNSBL{List: lists(dnsbl.Majority, "bl1.test", "bl2.test", "bl3.test")}
			var buf bytes.Buffer
			e := newTestEngine(&buf, Options{}, step, &lastStep{})
			r := *req
			ctx := context.Background()
			if v := e.Decide(ctx, &r); v.Action != Reject {
				b.Fatalf("verdict %+v", v)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				buf.Reset()
				if v := e.Decide(ctx, &r); v.Action != Reject {
					b.Fatalf("verdict %+v", v)
				}
			}
		})
	}
}

// BenchmarkDecisionWithDNSBLs is a whole decision for a first-time triplet
// (known, DNS lists, greylist on an in-memory store) with three DNSBLs
// whose answers are cached, against the same pipeline without them: what
// the lists cost once the resolver's cache is warm.
func BenchmarkDecisionWithDNSBLs(b *testing.B) {
	for _, withLists := range []bool{false, true} {
		name := "none"
		if withLists {
			name = "three-warm"
		}
		b.Run(name, func(b *testing.B) {
			store, err := sqlitestore.Open(":memory:")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { store.Close() })
			g := &Greylisting{Greylist: &greylist.Greylist{Store: store, Rules: greylist.DefaultRules}, Keyer: greylist.DefaultKeyer}
			steps := []Step{g.KnownStep()}
			if withLists {
				lists := dnsLists(b, 0)
				steps = append(steps, &DNSBL{List: lists(dnsbl.Any, "bl1.test", "bl2.test", "bl3.test")})
			}
			steps = append(steps, g.GreylistStep())
			e := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))}, steps...)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				r := &Request{ClientAddr: netip.MustParseAddr("192.0.2.200"), Sender: "a@example.org", Recipient: fmt.Sprintf("r%d@example.net", i)}
				if v := e.Decide(ctx, r); v.Action != Defer {
					b.Fatalf("verdict %+v", v)
				}
			}
		})
	}
}
