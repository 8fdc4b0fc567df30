package dnstest

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func query(t *testing.T, net, addr, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: net, Timeout: timeout}
	r, _, err := c.ExchangeContext(context.Background(), m, addr)
	return r, err
}

func TestAnswers(t *testing.T) {
	s := Start(t, "testdata/example.zone")
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		soa     bool // SOA in the authority section
		tc      bool
	}{
		{"www.example.test", dns.TypeA, dns.RcodeSuccess, 1, false, false},
		{"WWW.Example.Test", dns.TypeAAAA, dns.RcodeSuccess, 1, false, false},
		{"alias.example.test", dns.TypeA, dns.RcodeSuccess, 2, false, false},
		{"example.test", dns.TypeTXT, dns.RcodeSuccess, 1, false, false},
		{"www.example.test", dns.TypeMX, dns.RcodeSuccess, 0, true, false},   // NODATA
		{"b.c.example.test", dns.TypeA, dns.RcodeSuccess, 0, true, false},    // empty non-terminal
		{"nope.example.test", dns.TypeA, dns.RcodeNameError, 0, true, false}, // NXDOMAIN
		{"other.test", dns.TypeA, dns.RcodeRefused, 0, false, false},
		{"broken.example.test", dns.TypeA, dns.RcodeServerFailure, 0, false, false},
		{"x.closed.example.test", dns.TypeA, dns.RcodeRefused, 0, false, false},
		{"big.example.test", dns.TypeA, dns.RcodeSuccess, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := query(t, "udp", s.Addr(), tt.name, tt.qtype, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.rcode || len(r.Answer) != tt.answers || r.Truncated != tt.tc {
				t.Fatalf("rcode %s, %d answers, tc %v; want %s, %d, %v\n%v",
					dns.RcodeToString[r.Rcode], len(r.Answer), r.Truncated,
					dns.RcodeToString[tt.rcode], tt.answers, tt.tc, r)
			}
			gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if gotSOA != tt.soa {
				t.Errorf("SOA in authority: %v, want %v", gotSOA, tt.soa)
			}
		})
	}
}

func TestTCPAndCounts(t *testing.T) {
	s := Start(t, "testdata/example.zone")
	r, err := query(t, "tcp", s.Addr(), "big.example.test", dns.TypeA, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("TCP answer: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	if _, err := query(t, "udp", s.Addr(), "big.example.test", dns.TypeA, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := query(t, "udp", s.Addr(), "www.example.test", dns.TypeA, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := s.Queries("BIG.example.test.", dns.TypeA); got != 2 {
		t.Errorf("Queries(big, A) = %d, want 2", got)
	}
	if got := s.Queries("big.example.test", dns.TypeAAAA); got != 0 {
		t.Errorf("Queries(big, AAAA) = %d, want 0", got)
	}
	if got := s.Total(); got != 3 {
		t.Errorf("Total = %d, want 3", got)
	}
	s.ResetCounts()
	if got := s.Total(); got != 0 {
		t.Errorf("Total after ResetCounts = %d", got)
	}
}

func TestDelayDropAndClose(t *testing.T) {
	s := Start(t, "testdata/example.zone")
	if _, err := query(t, "udp", s.Addr(), "silent.example.test", dns.TypeA, 100*time.Millisecond); err == nil {
		t.Error("dropped query got an answer")
	}
	// The fixture delays slow.example.test by 200ms: a client waiting
	// 50ms gives up, one waiting 2s gets the answer.
	if _, err := query(t, "udp", s.Addr(), "slow.example.test", dns.TypeA, 50*time.Millisecond); err == nil {
		t.Error("delayed answer came before the client's deadline")
	}
	if _, err := query(t, "udp", s.Addr(), "slow.example.test", dns.TypeA, 2*time.Second); err != nil {
		t.Errorf("delayed answer never came: %v", err)
	}

	s.SetDelay("example.test", time.Hour)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m := new(dns.Msg)
		m.SetQuestion("www.example.test.", dns.TypeA)
		c := &dns.Client{Timeout: time.Second}
		c.Exchange(m, s.Addr()) //nolint:errcheck // it times out: the server is gone
	}()
	for s.Queries("www.example.test", dns.TypeA) == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for an hour-long delay")
	}
	<-done
}

func TestResetAndAddRecords(t *testing.T) {
	s := Start(t, "testdata/example.zone")
	s.Reset("broken.example.test")
	if err := s.AddRecords("broken.example.test. 60 IN A 192.0.2.99"); err != nil {
		t.Fatal(err)
	}
	r, err := query(t, "udp", s.Addr(), "broken.example.test", dns.TypeA, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("after Reset: %v", r)
	}
	if err := s.AddRecords("not a record"); err == nil {
		t.Error("AddRecords accepted garbage")
	}
}

func TestDead(t *testing.T) {
	addr := Dead(t)
	if _, err := query(t, "udp", addr, "www.example.test", dns.TypeA, 100*time.Millisecond); err == nil {
		t.Fatal("dead server answered")
	}
}

func TestBadZone(t *testing.T) {
	s := &Server{records: map[string]map[uint16][]dns.RR{}, zones: map[string]*dns.SOA{}, behave: map[string]behaviour{}, counts: map[key]int{}}
	for _, f := range []string{"testdata/bad-record.zone", "testdata/bad-directive.zone", "testdata/missing.zone"} {
		if err := s.LoadZone(f); err == nil {
			t.Errorf("LoadZone(%s) accepted it", f)
		}
	}
}

func TestGarbage(t *testing.T) {
	s := Start(t, "testdata/example.zone")
	s.SetGarbage("example.test")
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		if r, err := query(t, network, s.Addr(), "www.example.test", dns.TypeA, time.Second); err == nil {
			t.Errorf("%s: garbage parsed as %v", network, r)
		}
		if el := time.Since(start); el > 500*time.Millisecond {
			t.Errorf("%s: the garbage came after %v, want at once", network, el)
		}
	}
	s.Reset("example.test")
	if _, err := query(t, "udp", s.Addr(), "www.example.test", dns.TypeA, time.Second); err != nil {
		t.Errorf("after Reset: %v", err)
	}
}
