package main

import (
	"context"
	"net/http"

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
			mux := http.NewServeMux()
			mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				a.engine.Metrics().WritePrometheus(w)
				writeDNSMetrics(w, a.dnsResolver, a.dnsLists)
				writeConnMetrics(w)
			})
			return a.addHTTPService(ctx, "metrics", "--metrics-listen", addr, "/metrics", mux)
		},
	})
}
