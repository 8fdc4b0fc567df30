package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/pflag"
)

// Prometheus metrics over HTTP, off unless --metrics-listen is given.
func init() {
	var addr string
	register(module{
		name: "metrics",
		addFlags: func(fs *pflag.FlagSet) {
			fs.StringVar(&addr, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (HOST:PORT, keep it on loopback)")
		},
		build: func(ctx context.Context, a *app) error {
			if addr == "" {
				return nil
			}
			var lc net.ListenConfig
			ln, err := lc.Listen(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("--metrics-listen: %w", err)
			}
			mux := http.NewServeMux()
			mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				a.engine.Metrics().WritePrometheus(w)
				writeDNSMetrics(w, a.dnsResolver)
			})
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			a.addService(service{
				name: "metrics http://" + ln.Addr().String() + "/metrics",
				serve: func() error {
					if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
						return err
					}
					return nil
				},
				shutdown: srv.Shutdown,
			})
			return nil
		},
	})
}
