package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"

	"github.com/spf13/pflag"
)

// Go's profiler over HTTP, for finding what slows greymilter under load
// (go tool pprof http://ADDR/debug/pprof/profile). Off unless
// --pprof-listen is given, and only on loopback: profiles show addresses
// of mail in flight, and a CPU profile costs the server while it runs.
func init() {
	register("Profiling", func() module { return &pprofFlags{} })
}

type pprofFlags struct{ addr string }

func (f *pprofFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "pprof-listen", "", "serve Go profiles at http://ADDR/debug/pprof/ (loopback HOST:PORT only; for performance work)")
}

func (f *pprofFlags) check() error {
	if f.addr == "" {
		return nil
	}
	if err := checkLoopback(f.addr); err != nil {
		return flagErrorf("pprof-listen", "--pprof-listen: %w", err)
	}
	return nil
}

func (f *pprofFlags) steps(*pipeline) error { return nil }

func (f *pprofFlags) start(ctx context.Context, a *app) error {
	if f.addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return a.addHTTPService(ctx, "pprof", "--pprof-listen", f.addr, "/debug/pprof/", mux)
}

// checkLoopback accepts HOST:PORT where HOST is a loopback address or
// localhost.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("%q: only a loopback address (127.0.0.1, [::1], localhost) is allowed", addr)
	}
	return nil
}
