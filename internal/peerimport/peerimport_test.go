package peerimport

import (
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

func TestParseDump(t *testing.T) {
	dump := "VERSION=3\nformat=print\ntype=btree\nHEADER=END\n" +
		" 192.0.2.0/a@example.org/b@example.net\n 1700000000,1700000400\n" +
		" 2001:db8::/odd\\5cname\\0a@example.org/c@example.net\n 1700000000,1700000000\n" +
		"DATA=END\n"
	got := map[string]string{}
	if err := parseDump(strings.NewReader(dump), func(k, v string) { got[k] = v }); err != nil {
		t.Fatal(err)
	}
	if got["192.0.2.0/a@example.org/b@example.net"] != "1700000000,1700000400" || got["2001:db8::/odd\\name\n@example.org/c@example.net"] != "1700000000,1700000000" {
		t.Errorf("parsed %q", got)
	}
	if err := parseDump(strings.NewReader("HEADER=END\n key\nDATA=END\n"), func(string, string) {}); err == nil {
		t.Error("a key without a value: no error")
	}
	if err := parseDump(strings.NewReader("HEADER=END\n bad\\zz\n v\nDATA=END\n"), func(string, string) {}); err == nil {
		t.Error("a bad escape: no error")
	}
}

func TestPostgreyKey(t *testing.T) {
	k, ok := postgreyKey("192.0.2.0/prvs=1234abcd=news@example.org/Bob@Example.NET", greylist.DefaultKeyer)
	if !ok || k != (greylist.Key{Client: "192.0.2.0/24", Sender: "news@example.org", Recipient: "bob@example.net"}) {
		t.Errorf("key %+v %v", k, ok)
	}
	if _, ok := postgreyKey("3f786850e387550fdab836ed7e6dc881de23001b", greylist.DefaultKeyer); ok {
		t.Error("a --privacy hash read as a key")
	}
	k, ok = postgreyKey("192.0.2.7//b@example.net", greylist.Keyer{ByHost: true})
	if !ok || k.Client != "192.0.2.7" || k.Sender != "" {
		t.Errorf("null sender by host: %+v %v", k, ok)
	}
}

func TestSQLgreyFields(t *testing.T) {
	for src, want := range map[string]string{"198.51.100": "198.51.100.0/24", "198.51.100.7": "198.51.100.0/24", "2001:db8::1": "2001:db8::/64"} {
		if got, ok := sqlgreyClient(src, greylist.DefaultKeyer); !ok || got != want {
			t.Errorf("src %q: %q %v, want %q", src, got, ok, want)
		}
	}
	if _, ok := sqlgreyClient("mail.example", greylist.DefaultKeyer); ok {
		t.Error("a name read as a client")
	}
	at := time.Unix(1700000000, 0)
	for _, v := range []any{int64(1700000000), "1700000000", []byte("1700000000"), at} {
		if got, ok := sqlgreyTime(v); !ok || !got.Equal(at) {
			t.Errorf("time %#v: %v %v", v, got, ok)
		}
	}
	if got, ok := sqlgreyTime("2023-11-14 22:13:20"); !ok || got.Year() != 2023 {
		t.Errorf("text time: %v %v", got, ok)
	}
	if _, ok := sqlgreyTime("yesterday"); ok {
		t.Error("text read as a time")
	}
}
