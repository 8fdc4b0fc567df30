package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/greymilter/greymilter/internal/sockaddr"
)

// parseTarget reads a server address: inet:HOST:PORT, inet6:[ADDR]:PORT,
// unix:PATH (the forms greymilter's flags take) or a bare HOST:PORT. Only
// loopback addresses and unix sockets are accepted: greyload is a load
// generator, and it is not to be pointed at somebody else's server.
func parseTarget(s string) (sockaddr.Addr, error) {
	var a sockaddr.Addr
	if kind, _, ok := strings.Cut(s, ":"); ok && isKind(kind) {
		var err error
		if a, err = sockaddr.Parse(s); err != nil {
			return a, err
		}
	} else {
		a = sockaddr.Addr{Network: "tcp", Address: s}
	}
	if a.Network == "unix" {
		return a, nil
	}
	host, port, err := net.SplitHostPort(a.Address)
	if err != nil {
		return a, fmt.Errorf("target %q: %w", s, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return a, fmt.Errorf("target %q: only loopback addresses (127.0.0.0/8, ::1) and unix sockets are allowed", s)
	}
	a.Address = net.JoinHostPort(ip.Unmap().String(), port)
	return a, nil
}

func isKind(k string) bool {
	switch strings.ToLower(k) {
	case "inet", "inet6", "tcp", "tcp6", "unix", "local":
		return true
	}
	return false
}
