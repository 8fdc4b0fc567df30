package storetest

import (
	"bytes"
	"context"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// adminT0 is the admin suite's clock.
var adminT0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

var adminRules = greylist.Rules{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxWait: 12 * time.Hour, MaxAge: 35 * 24 * time.Hour, PurgeUnverified: 48 * time.Hour}

// RunAdmin runs the admin conformance suite (greylist.Admin) on stores
// from open; every store must implement greylist.Admin.
func RunAdmin(t *testing.T, open func(t *testing.T) greylist.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s greylist.Store, a greylist.Admin)
	}{
		{"ListFilters", testListFilters},
		{"DeleteMakesANewTriplet", testDelete},
		{"PassMakesAKnownTriplet", testPass},
		{"Whitelist", testWhitelist},
		{"ExportImport", func(t *testing.T, s greylist.Store, a greylist.Admin) { testExportImport(t, s, a, open) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			a, ok := s.(greylist.Admin)
			if !ok {
				t.Fatalf("%T does not implement greylist.Admin", s)
			}
			tc.fn(t, s, a)
		})
	}
}

func attempt(t *testing.T, s greylist.Store, k greylist.Key, at time.Time) greylist.Result {
	t.Helper()
	res, err := s.Attempt(context.Background(), k, adminRules, at)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// adminFixture stores three triplets: one passed from 192.0.2.0/24, one
// pending from the same subnet, one pending from 2001:db8::/64.
func adminFixture(t *testing.T, s greylist.Store) (passed, pending, v6 greylist.Key) {
	t.Helper()
	passed = greylist.Key{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "r@example.net"}
	pending = greylist.Key{Client: "192.0.2.0/24", Sender: "b@example.org", Recipient: "r@example.net"}
	v6 = greylist.Key{Client: "2001:db8::/64", Sender: "a@example.org", Recipient: "q@example.net"}
	attempt(t, s, passed, adminT0)
	attempt(t, s, passed, adminT0.Add(6*time.Minute))
	attempt(t, s, pending, adminT0)
	attempt(t, s, v6, adminT0)
	return
}

func keys(ts []greylist.Triplet) []greylist.Key {
	out := []greylist.Key{}
	for _, t := range ts {
		out = append(out, t.Key)
	}
	return out
}

func list(t *testing.T, a greylist.Admin, f greylist.Filter) []greylist.Triplet {
	t.Helper()
	ts, err := a.List(context.Background(), f.Normalized())
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func testListFilters(t *testing.T, s greylist.Store, a greylist.Admin) {
	passed, pending, v6 := adminFixture(t, s)
	tests := []struct {
		f    greylist.Filter
		want []greylist.Key
	}{
		{greylist.Filter{}, []greylist.Key{passed, pending, v6}},
		{greylist.Filter{Client: "192.0.2.77"}, []greylist.Key{passed, pending}},
		{greylist.Filter{Client: "192.0.0.0/16"}, []greylist.Key{passed, pending}},
		{greylist.Filter{Client: "192.0.2.0/24"}, []greylist.Key{passed, pending}},
		{greylist.Filter{Client: "198.51.100.1"}, []greylist.Key{}},
		{greylist.Filter{Client: "2001:db8::1"}, []greylist.Key{v6}},
		{greylist.Filter{Sender: "A@Example.org"}, []greylist.Key{passed, v6}},
		{greylist.Filter{Recipient: "Q@example.net"}, []greylist.Key{v6}},
		{greylist.Filter{State: greylist.PassedState}, []greylist.Key{passed}},
		{greylist.Filter{State: greylist.Pending, Client: "192.0.2.1"}, []greylist.Key{pending}},
	}
	for _, tt := range tests {
		got := keys(list(t, a, tt.f))
		if !sameKeys(got, tt.want) {
			t.Errorf("List(%+v) = %v, want %v", tt.f, got, tt.want)
		}
	}
	ts := list(t, a, greylist.Filter{Sender: passed.Sender, Client: passed.Client})
	if len(ts) != 1 || ts[0].Attempts != 2 || !ts[0].Passed() || !ts[0].FirstSeen.Equal(adminT0) {
		t.Errorf("passed triplet listed as %+v", ts)
	}
}

// sameKeys compares as sets: stores list in their own order.
func sameKeys(a, b []greylist.Key) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[greylist.Key]int{}
	for _, k := range a {
		seen[k]++
	}
	for _, k := range b {
		if seen[k] == 0 {
			return false
		}
		seen[k]--
	}
	return true
}

func testDelete(t *testing.T, s greylist.Store, a greylist.Admin) {
	ctx := context.Background()
	passed, pending, v6 := adminFixture(t, s)
	n, err := a.Delete(ctx, greylist.Filter{Client: "192.0.2.9", Sender: passed.Sender})
	if err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v; want 1", n, err)
	}
	// What decisions read knows at once.
	if _, found, err := s.Lookup(ctx, passed); err != nil || found {
		t.Fatalf("deleted triplet still found (%v)", err)
	}
	if res := attempt(t, s, passed, adminT0.Add(10*time.Minute)); res.Outcome != greylist.New {
		t.Errorf("after delete: %v, want new", res.Outcome)
	}
	if got := keys(list(t, a, greylist.Filter{State: greylist.Pending})); !sameKeys(got, []greylist.Key{passed, pending, v6}) {
		t.Errorf("after delete and a new attempt: pending %v", got)
	}
	if n, err := a.Delete(ctx, greylist.Filter{}); err != nil || n != 3 {
		t.Fatalf("Delete all = %d, %v; want 3", n, err)
	}
	if n, err := a.Delete(ctx, greylist.Filter{}); err != nil || n != 0 {
		t.Fatalf("Delete of nothing = %d, %v; want 0", n, err)
	}
}

func testPass(t *testing.T, s greylist.Store, a greylist.Admin) {
	ctx := context.Background()
	_, pending, v6 := adminFixture(t, s)
	at := adminT0.Add(time.Minute)
	n, err := a.Pass(ctx, greylist.Filter{Client: "192.0.2.0/24"}, at)
	if err != nil || n != 1 {
		t.Fatalf("Pass = %d, %v; want 1 (the other one passed already)", n, err)
	}
	rec, found, err := s.Lookup(ctx, pending)
	if err != nil || !found || !rec.Passed() {
		t.Fatalf("passed triplet reads %+v %v %v", rec, found, err)
	}
	if res := attempt(t, s, pending, at.Add(time.Second)); res.Outcome != greylist.Known {
		t.Errorf("after pass: %v, want known", res.Outcome)
	}
	if res := attempt(t, s, v6, at.Add(time.Second)); res.Outcome != greylist.EarlyRetry {
		t.Errorf("a triplet the filter left out: %v, want early-retry", res.Outcome)
	}
}

func testWhitelist(t *testing.T, _ greylist.Store, a greylist.Admin) {
	ctx := context.Background()
	in := netip.MustParseAddr("192.0.2.7")
	out := netip.MustParseAddr("198.51.100.7")
	if _, ok := a.Whitelisted(in, adminT0); ok {
		t.Fatal("whitelisted before any entry")
	}
	e := greylist.WhitelistEntry{Network: netip.MustParsePrefix("192.0.2.0/24"), Added: adminT0, Expires: adminT0.Add(time.Hour), Note: "test"}
	if err := a.AddWhitelist(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := a.AddWhitelist(ctx, greylist.WhitelistEntry{Network: netip.MustParsePrefix("2001:db8::1/128"), Added: adminT0}); err != nil {
		t.Fatal(err)
	}
	if got, ok := a.Whitelisted(in, adminT0.Add(time.Minute)); !ok || got.Network != e.Network || got.Note != "test" {
		t.Errorf("Whitelisted(%v) = %+v, %v", in, got, ok)
	}
	if _, ok := a.Whitelisted(netip.MustParseAddr("::ffff:192.0.2.7"), adminT0); !ok {
		t.Error("an IPv4-mapped address is not matched")
	}
	if _, ok := a.Whitelisted(out, adminT0); ok {
		t.Errorf("Whitelisted(%v): true", out)
	}
	if _, ok := a.Whitelisted(in, adminT0.Add(2*time.Hour)); ok {
		t.Error("an expired entry still matches")
	}
	if _, ok := a.Whitelisted(netip.MustParseAddr("2001:db8::1"), adminT0.Add(1000*time.Hour)); !ok {
		t.Error("an entry without expiry does not match")
	}
	es, err := a.Whitelist(ctx)
	if err != nil || len(es) != 2 {
		t.Fatalf("Whitelist = %+v, %v", es, err)
	}
	if ok, err := a.RemoveWhitelist(ctx, e.Network); err != nil || !ok {
		t.Fatalf("RemoveWhitelist = %v, %v", ok, err)
	}
	if _, ok := a.Whitelisted(in, adminT0); ok {
		t.Error("a removed entry still matches")
	}
	if ok, err := a.RemoveWhitelist(ctx, e.Network); err != nil || ok {
		t.Fatalf("RemoveWhitelist again = %v, %v", ok, err)
	}
}

func testExportImport(t *testing.T, s greylist.Store, a greylist.Admin, open func(t *testing.T) greylist.Store) {
	ctx := context.Background()
	adminFixture(t, s)
	null := greylist.Key{Client: "spf:example.org", Sender: "", Recipient: "r@example.net"}
	attempt(t, s, null, adminT0)
	if _, err := s.Attempt(ctx, greylist.Key{Client: "192.0.2.0/24", Sender: "c@example.org", Recipient: "r@example.net"}, adminRules, adminT0); err != nil {
		t.Fatal(err)
	}
	if err := a.AddWhitelist(ctx, greylist.WhitelistEntry{Network: netip.MustParsePrefix("203.0.113.0/24"), Added: adminT0, Expires: adminT0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := greylist.Export(ctx, a, &buf)
	if err != nil {
		t.Fatal(err)
	}
	// 5 triplets, 1 client (the passed triplet's), 1 whitelist entry.
	if n != 7 {
		t.Fatalf("exported %d lines, want 7:\n%s", n, buf.String())
	}
	im, err := greylist.ReadExport(bytes.NewReader(buf.Bytes()), "export")
	if err != nil {
		t.Fatal(err)
	}
	s2 := open(t)
	a2 := s2.(greylist.Admin)
	if err := im.Write(ctx, a2); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if _, err := greylist.Export(ctx, a2, &again); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(lines(buf.String()), lines(again.String())) {
		t.Errorf("export of the import differs:\n%s\nwant:\n%s", again.String(), buf.String())
	}
	// The copy decides as the original.
	passed := greylist.Key{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "r@example.net"}
	if res := attempt(t, s2, passed, adminT0.Add(time.Hour)); res.Outcome != greylist.Known {
		t.Errorf("imported passed triplet: %v, want known", res.Outcome)
	}
	if res := attempt(t, s2, null, adminT0.Add(time.Minute)); res.Outcome != greylist.EarlyRetry {
		t.Errorf("imported pending triplet: %v, want early-retry", res.Outcome)
	}
	if _, ok := a2.Whitelisted(netip.MustParseAddr("203.0.113.5"), adminT0); !ok {
		t.Error("imported whitelist entry does not match")
	}
	if c, found, err := s2.Client(ctx, "192.0.2.0/24"); err != nil || !found || c.Passes != 1 {
		t.Errorf("imported client: %+v %v %v", c, found, err)
	}
}

// lines sorts an export's lines: stores list in their own order.
func lines(s string) map[string]int {
	m := map[string]int{}
	for _, l := range bytes.Split([]byte(s), []byte("\n")) {
		m[string(l)]++
	}
	return m
}
