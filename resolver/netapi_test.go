package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
)

// The resolver serves the SPF library.
var _ spf.DNSResolver = (*Resolver)(nil)

func TestNetAPI(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	r, _ := newResolver(t, Config{}, srv.Addr())
	ctx := context.Background()

	txt, err := r.LookupTXT(ctx, "example.test")
	if err != nil || fmt.Sprint(txt) != "[v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all]" {
		t.Errorf("LookupTXT = %q, %v", txt, err)
	}

	mx, err := r.LookupMX(ctx, "example.test")
	if err != nil || len(mx) != 2 || mx[0].Host != "mx1.example.test." || mx[0].Pref != 10 || mx[1].Pref != 20 {
		t.Errorf("LookupMX = %v, %v", mx, err)
	}

	ips, err := r.LookupIPAddr(ctx, "www.example.test")
	if err != nil || fmt.Sprint(ips) != "[{192.0.2.30 } {2001:db8::30 }]" {
		t.Errorf("LookupIPAddr = %v, %v", ips, err)
	}
	ips, err = r.LookupIPAddr(ctx, "v6only.example.test")
	if err != nil || fmt.Sprint(ips) != "[{2001:db8::31 }]" {
		t.Errorf("LookupIPAddr(v6only) = %v, %v", ips, err)
	}
	ips, err = r.LookupIPAddr(ctx, "192.0.2.99")
	if err != nil || fmt.Sprint(ips) != "[{192.0.2.99 }]" {
		t.Errorf("LookupIPAddr(literal) = %v, %v", ips, err)
	}

	v4, err := r.LookupNetIP(ctx, "ip4", "host.example.test")
	if err != nil || len(v4) != 1 || v4[0] != netip.MustParseAddr("192.0.2.30") {
		t.Errorf("LookupNetIP(ip4) = %v, %v", v4, err)
	}
	v6, err := r.LookupNetIP(ctx, "ip6", "host.example.test")
	if err != nil || len(v6) != 1 || v6[0] != netip.MustParseAddr("2001:db8::30") {
		t.Errorf("LookupNetIP(ip6) = %v, %v", v6, err)
	}
	if _, err := r.LookupNetIP(ctx, "tcp", "host.example.test"); err == nil {
		t.Error("LookupNetIP(tcp) accepted it")
	}

	for _, addr := range []string{"192.0.2.30", "2001:db8::30", "::ffff:192.0.2.30"} {
		names, err := r.LookupAddr(ctx, addr)
		if err != nil || fmt.Sprint(names) != "[host.example.test.]" {
			t.Errorf("LookupAddr(%s) = %v, %v", addr, names, err)
		}
	}
	if _, err := r.LookupAddr(ctx, "not-an-ip"); err == nil {
		t.Error("LookupAddr(not-an-ip) accepted it")
	}
}

func TestNetAPIErrors(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	srv.SetRcode("broken.example.test", dns.RcodeServerFailure)
	r, _ := newResolver(t, Config{Timeout: 300 * time.Millisecond}, srv.Addr())
	dead, _ := newResolver(t, Config{Timeout: 100 * time.Millisecond}, dnstest.Dead(t))
	ctx := context.Background()
	tests := []struct {
		name                         string
		err                          error
		notFound, timeout, temporary bool
	}{
		{"NXDOMAIN", lookupErr(r.LookupTXT(ctx, "nope.example.test")), true, false, false},
		{"NODATA", lookupErr(r.LookupMX(ctx, "host.example.test")), true, false, false},
		{"no PTR", lookupErr(r.LookupAddr(ctx, "192.0.2.31")), true, false, false},
		{"no address", lookupErr(r.LookupIPAddr(ctx, "nope.example.test")), true, false, false},
		{"SERVFAIL", lookupErr(r.LookupIPAddr(ctx, "broken.example.test")), false, false, true},
		{"timeout", lookupErr(dead.LookupTXT(ctx, "example.test")), false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The SPF library asserts the type without errors.As.
			derr, ok := tt.err.(*net.DNSError)
			if !ok {
				t.Fatalf("error %T %v, want *net.DNSError", tt.err, tt.err)
			}
			if derr.IsNotFound != tt.notFound || derr.IsTimeout != tt.timeout || derr.Temporary() != tt.temporary {
				t.Errorf("%v: notFound=%v timeout=%v temporary=%v", derr, derr.IsNotFound, derr.IsTimeout, derr.Temporary())
			}
		})
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := dead.LookupTXT(ctx2, "example.test"); !errors.As(err, new(*net.DNSError)) {
		t.Errorf("cancelled lookup: %v", err)
	}
}

func lookupErr[T any](_ T, err error) error { return err }

func TestSPFThroughResolver(t *testing.T) {
	srv := dnstest.Start(t, "testdata/resolver.zone")
	r, _ := newResolver(t, Config{}, srv.Addr())
	tests := []struct {
		ip   string
		want spf.Result
	}{
		{"192.0.2.30", spf.Pass},
		{"2001:db8::1", spf.Pass},
		{"198.51.100.1", spf.Fail},
	}
	for _, tt := range tests {
		res, err := spf.CheckHostWithSender(net.ParseIP(tt.ip), "mx1.example.test", "user@example.test",
			spf.WithResolver(r), spf.WithContext(context.Background()))
		if res != tt.want {
			t.Errorf("SPF for %s: %v (%v), want %v", tt.ip, res, err, tt.want)
		}
	}
	res, _ := spf.CheckHostWithSender(net.ParseIP("192.0.2.30"), "x", "user@nope.example.test", spf.WithResolver(r))
	if res != spf.None {
		t.Errorf("SPF for a domain that does not exist: %v, want none", res)
	}
}
