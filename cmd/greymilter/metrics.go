package main

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/greylist"
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
				writeStoreMetrics(w, a.greylist.Store)
			})
			return a.addHTTPService(ctx, "metrics", "--metrics-listen", addr, "/metrics", mux)
		},
	})
}

// writeStoreMetrics writes the health of a store on a database server.
func writeStoreMetrics(w io.Writer, s greylist.Store) {
	h, ok := s.(greylist.Health)
	if !ok {
		return
	}
	up := 0
	if h.Available() {
		up = 1
	}
	fmt.Fprintf(w, "# HELP greymilter_db_up Whether the last operation reached the database.\n# TYPE greymilter_db_up gauge\ngreymilter_db_up %d\n", up)
	fmt.Fprintf(w, "# HELP greymilter_db_failures_total Store operations failed because the database was unreachable or did not answer in time.\n# TYPE greymilter_db_failures_total counter\ngreymilter_db_failures_total %d\n", h.Failures())
}
