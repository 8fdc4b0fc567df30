// Package dnstest runs an in-process authoritative DNS server for tests.
//
// The server listens on 127.0.0.1 on one port for both UDP and TCP and
// serves zones written as RFC 1035 master files (plain-text fixtures in
// testdata/). It counts the queries it receives, so tests can tell a cache
// hit (no packet) from a miss, and it can misbehave on purpose for chosen
// names: answer SERVFAIL or REFUSED, answer late, never answer, answer
// garbage, or set the TC bit on UDP. It is a normal package so that every package's tests can
// import it; only tests should.
//
// Answers follow the data: a name with records of the asked type gets them
// (CNAMEs are followed inside the served data), a name that exists without
// that type gets NODATA, a name under a zone that does not exist gets
// NXDOMAIN, both with the zone's SOA in the authority section as RFC 2308
// wants, and a name outside every zone gets REFUSED.
//
// Zone files may also carry behaviours as directive comments, so that a
// fixture describes a whole test case:
//
//	;@ servfail broken.example.
//	;@ refused  closed.example.
//	;@ delay    slow.example. 3s
//	;@ drop     dead.example.
//	;@ garbage  junk.example.
//	;@ truncate big.example.
//
// A behaviour applies to the name and to every name below it.
package dnstest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a running test DNS server. Its methods are safe for concurrent
// use.
type Server struct {
	udp, tcp *dns.Server
	addr     string
	closed   chan struct{}
	once     sync.Once

	mu      sync.Mutex
	records map[string]map[uint16][]dns.RR // owner name -> type -> records
	zones   map[string]*dns.SOA            // zone apex -> SOA
	behave  map[string]behaviour           // name (and below) -> behaviour
	counts  map[key]int
	total   int
}

type key struct {
	name  string
	qtype uint16
}

type behaviour struct {
	rcode    int // answered instead of the data when not RcodeSuccess
	delay    time.Duration
	drop     bool
	garbage  bool
	truncate bool
}

// Start serves the zones in zoneFiles on 127.0.0.1 (UDP and TCP, same port)
// until the test ends. Any error fails the test at once.
func Start(tb testing.TB, zoneFiles ...string) *Server {
	tb.Helper()
	s := &Server{
		closed:  make(chan struct{}),
		records: map[string]map[uint16][]dns.RR{},
		zones:   map[string]*dns.SOA{},
		behave:  map[string]behaviour{},
		counts:  map[key]int{},
	}
	for _, f := range zoneFiles {
		if err := s.LoadZone(f); err != nil {
			tb.Fatal(err)
		}
	}
	pc, l, err := listenPair()
	if err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	s.udp = s.serve(tb, &dns.Server{PacketConn: pc})
	s.tcp = s.serve(tb, &dns.Server{Listener: l})
	tb.Cleanup(s.Close)
	return s
}

// serve starts srv and waits until it is listening, so that the first
// query of a test is never lost.
func (s *Server) serve(tb testing.TB, srv *dns.Server) *dns.Server {
	started := make(chan struct{})
	srv.Handler = dns.HandlerFunc(s.handle)
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe() //nolint:errcheck // returns only after Shutdown
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		tb.Fatal("dnstest: server did not start")
	}
	return srv
}

// listenPair binds UDP and TCP on the same free loopback port. The port
// the kernel picks for UDP may be taken for TCP, so it tries a few times.
func listenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no free port for UDP and TCP: %w", lastErr)
}

// Addr is the server's "127.0.0.1:PORT", for UDP and TCP alike.
func (s *Server) Addr() string { return s.addr }

// Close stops the server. Delayed answers in flight are abandoned at once.
// Start registers it with the test's cleanup, so tests only call it to
// kill a server on purpose.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closed)
		s.udp.Shutdown() //nolint:errcheck // nothing to do about it
		s.tcp.Shutdown() //nolint:errcheck
	})
}

// LoadZone adds the records and directives of a master file to the served
// data. Names in the file are relative to the file's $ORIGIN, or absolute.
func (s *Server) LoadZone(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("dnstest: %w", err)
	}
	defer f.Close()
	if err := s.loadDirectives(file); err != nil {
		return err
	}
	zp := dns.NewZoneParser(f, "", file)
	s.mu.Lock()
	defer s.mu.Unlock()
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		s.addLocked(rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("dnstest: %w", err)
	}
	return nil
}

// AddRecords adds records given in master-file syntax with absolute
// names, for the odd record a test builds at run time.
func (s *Server) AddRecords(rrs ...string) error {
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			return fmt.Errorf("dnstest: %q: %w", text, err)
		}
		s.mu.Lock()
		s.addLocked(rr)
		s.mu.Unlock()
	}
	return nil
}

func (s *Server) addLocked(rr dns.RR) {
	h := rr.Header()
	name := strings.ToLower(h.Name)
	if s.records[name] == nil {
		s.records[name] = map[uint16][]dns.RR{}
	}
	s.records[name][h.Rrtype] = append(s.records[name][h.Rrtype], rr)
	if soa, ok := rr.(*dns.SOA); ok {
		s.zones[name] = soa
	}
}

// loadDirectives reads the ";@ verb NAME [ARG]" lines of a zone file.
func (s *Server) loadDirectives(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("dnstest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), ";@")
		if !ok {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 2 {
			return fmt.Errorf("dnstest: %s:%d: want \";@ VERB NAME [ARG]\"", file, line)
		}
		verb, name := fields[0], fields[1]
		switch {
		case verb == "servfail" && len(fields) == 2:
			s.SetRcode(name, dns.RcodeServerFailure)
		case verb == "refused" && len(fields) == 2:
			s.SetRcode(name, dns.RcodeRefused)
		case verb == "drop" && len(fields) == 2:
			s.SetDrop(name)
		case verb == "garbage" && len(fields) == 2:
			s.SetGarbage(name)
		case verb == "truncate" && len(fields) == 2:
			s.SetTruncate(name)
		case verb == "delay" && len(fields) == 3:
			d, err := time.ParseDuration(fields[2])
			if err != nil {
				return fmt.Errorf("dnstest: %s:%d: %w", file, line, err)
			}
			s.SetDelay(name, d)
		default:
			return fmt.Errorf("dnstest: %s:%d: bad directive %q", file, line, text)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("dnstest: %s: %w", file, err)
	}
	return nil
}

// SetRcode makes the server answer rcode (e.g. dns.RcodeServerFailure,
// dns.RcodeRefused) for name and every name below it. dns.RcodeSuccess
// restores normal answers.
func (s *Server) SetRcode(name string, rcode int) {
	s.update(name, func(b *behaviour) { b.rcode = rcode })
}

// SetDelay makes the server wait d before answering for name and every
// name below it; 0 removes the delay. Close cuts every wait short.
func (s *Server) SetDelay(name string, d time.Duration) {
	s.update(name, func(b *behaviour) { b.delay = d })
}

// SetDrop makes the server never answer for name and every name below it.
func (s *Server) SetDrop(name string) {
	s.update(name, func(b *behaviour) { b.drop = true })
}

// SetGarbage makes the server answer for name and every name below it
// with a packet that has the query's ID and the flags of an answer but
// does not parse as a DNS message.
func (s *Server) SetGarbage(name string) {
	s.update(name, func(b *behaviour) { b.garbage = true })
}

// SetTruncate makes UDP answers for name and every name below it empty
// with the TC bit set, so that clients must retry over TCP.
func (s *Server) SetTruncate(name string) {
	s.update(name, func(b *behaviour) { b.truncate = true })
}

// Reset removes every behaviour set for name.
func (s *Server) Reset(name string) {
	s.mu.Lock()
	delete(s.behave, canonical(name))
	s.mu.Unlock()
}

func (s *Server) update(name string, f func(*behaviour)) {
	name = canonical(name)
	s.mu.Lock()
	b := s.behave[name]
	f(&b)
	s.behave[name] = b
	s.mu.Unlock()
}

// Queries is the number of queries received for name and qtype (e.g.
// dns.TypeA), over UDP and TCP.
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[key{canonical(name), qtype}]
}

// Total is the number of queries received for any name.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// ResetCounts sets every query counter back to zero.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	s.counts = map[key]int{}
	s.total = 0
	s.mu.Unlock()
}

func canonical(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func (s *Server) handle(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m) //nolint:errcheck // the client gives up on its own
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)

	s.mu.Lock()
	s.counts[key{name, q.Qtype}]++
	s.total++
	b := s.behaviourLocked(name)
	s.mu.Unlock()

	if b.drop {
		return
	}
	if b.delay > 0 {
		t := time.NewTimer(b.delay)
		select {
		case <-t.C:
		case <-s.closed:
			t.Stop()
			return
		}
	}
	if b.garbage {
		// ID, QR and RD set, one question and one answer announced, then
		// bytes that are neither.
		w.Write([]byte{byte(req.Id >> 8), byte(req.Id), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xfe, 0xfd}) //nolint:errcheck // as for WriteMsg
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	switch {
	case b.rcode != dns.RcodeSuccess:
		m.Rcode = b.rcode
	case b.truncate && isUDP:
		m.Truncated = true
	default:
		s.answer(m, name, q.Qtype)
	}
	if isUDP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m) //nolint:errcheck // a lost answer is what a client must survive
}

// behaviourLocked finds the behaviour set for name or its nearest parent.
func (s *Server) behaviourLocked(name string) behaviour {
	for n := name; ; {
		if b, ok := s.behave[n]; ok {
			return b
		}
		i, end := dns.NextLabel(n, 0)
		if end {
			return behaviour{}
		}
		n = n[i:]
	}
}

// answer fills m from the served data, following CNAMEs.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	soa := s.zoneLocked(name)
	if soa == nil {
		m.Rcode = dns.RcodeRefused
		m.Authoritative = false
		return
	}
	for range 8 { // CNAME chain bound
		types, exists := s.records[name]
		if rrs := types[qtype]; len(rrs) > 0 {
			m.Answer = append(m.Answer, copyRRs(rrs)...)
			return
		}
		if c := types[dns.TypeCNAME]; len(c) > 0 && qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, dns.Copy(c[0]))
			name = canonical(c[0].(*dns.CNAME).Target)
			if soa = s.zoneLocked(name); soa == nil {
				return // the target is elsewhere; the client follows it
			}
			continue
		}
		if !exists && !s.hasChildrenLocked(name) {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = []dns.RR{dns.Copy(soa)}
		return
	}
}

// zoneLocked returns the SOA of the zone holding name, nil if none does.
func (s *Server) zoneLocked(name string) *dns.SOA {
	for n := name; ; {
		if soa, ok := s.zones[n]; ok {
			return soa
		}
		i, end := dns.NextLabel(n, 0)
		if end {
			return nil
		}
		n = n[i:]
	}
}

// hasChildrenLocked tells an empty non-terminal (NODATA) from a name that
// does not exist (NXDOMAIN).
func (s *Server) hasChildrenLocked(name string) bool {
	for n := range s.records {
		if strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

func copyRRs(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

// Dead returns the "127.0.0.1:PORT" of a DNS server that never answers: a
// bound UDP socket that nobody reads and a TCP listener that never
// accepts, both closed when the test ends. A resolver pointed at it sees
// timeouts, not refused connections.
func Dead(tb testing.TB) string {
	tb.Helper()
	pc, l, err := listenPair()
	if err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	tb.Cleanup(func() {
		pc.Close()
		l.Close()
	})
	return pc.LocalAddr().String()
}
