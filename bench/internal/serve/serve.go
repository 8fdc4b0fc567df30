// Package serve holds what the null servers of bench/ share: flags, the
// listener and running until SIGTERM.
package serve

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/internal/sockaddr"
)

// Main parses the -s flag of a null server called name (and those that
// flags define), listens, runs serve until SIGTERM or SIGINT, then calls
// stop and exits.
func Main(name, usage string, serve func(net.Listener) error, stop func(), flags ...func(*pflag.FlagSet)) {
	fs := pflag.NewFlagSet(name, pflag.ExitOnError)
	for _, f := range flags {
		f(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: %s -s inet:127.0.0.1:PORT\n\n%s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	socket := fs.StringP("socket", "s", "", "listen here: inet:HOST:PORT, inet6:[ADDR]:PORT or unix:PATH")
	fs.Parse(os.Args[1:])
	if *socket == "" || fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	addr, err := sockaddr.Parse(*socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	ln, err := sockaddr.Listen(ctx, addr, 0o666)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "%s listening on %s\n", name, addr)
	errs := make(chan error, 1)
	go func() { errs <- serve(ln) }()
	select {
	case <-ctx.Done():
		stop()
	case err := <-errs:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
