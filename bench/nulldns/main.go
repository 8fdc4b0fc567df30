// Command nulldns is a DNS server on loopback that knows no name: every
// query is answered NXDOMAIN with an SOA whose negative TTL lets resolvers
// cache the answer for an hour. The benchmarks point greymilter at it
// (--dns), so that its SPF and reverse-DNS lookups stay on this machine
// and cost what they cost behind a local caching resolver.
package main

import (
	"fmt"
	"net"
	"os"

	"github.com/miekg/dns"
	"github.com/spf13/pflag"
)

func main() {
	fs := pflag.NewFlagSet("nulldns", pflag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "UDP and TCP address to serve; loopback only")
	fs.Parse(os.Args[1:])
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "nulldns: --listen %q: want a loopback HOST:PORT\n", *listen)
		os.Exit(2)
	}
	pc, ln, err := listenPair(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nulldns: %v\n", err)
		os.Exit(1)
	}
	h := dns.HandlerFunc(answer)
	go (&dns.Server{Listener: ln, Handler: h}).ActivateAndServe()
	fmt.Println(pc.LocalAddr())
	if err := (&dns.Server{PacketConn: pc, Handler: h}).ActivateAndServe(); err != nil {
		fmt.Fprintf(os.Stderr, "nulldns: %v\n", err)
		os.Exit(1)
	}
}

// listenPair listens on UDP and on TCP at the same port (TCP is for
// truncated answers). With port 0 the UDP port the kernel picks may be
// taken in TCP: a few more tries then.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	var err error
	for range 20 {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return nil, nil, err
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			break
		}
	}
	return nil, nil, err
}

var soa = &dns.SOA{
	Hdr:     dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
	Ns:      "ns.nulldns.invalid.",
	Mbox:    "hostmaster.nulldns.invalid.",
	Serial:  1,
	Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 3600,
}

func answer(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeNameError)
	m.Authoritative = true
	m.Ns = []dns.RR{soa}
	w.WriteMsg(m)
}
