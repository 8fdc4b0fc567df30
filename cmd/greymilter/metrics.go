package main

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/greylist"
)

// Prometheus metrics over HTTP, off unless --metrics-listen is given.
func init() {
	register("Metrics", func() module { return &metricsFlags{} })
}

type metricsFlags struct{ addr string }

func (f *metricsFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (HOST:PORT, keep it on loopback)")
}

func (f *metricsFlags) check() error          { return nil }
func (f *metricsFlags) steps(*pipeline) error { return nil }

func (f *metricsFlags) start(ctx context.Context, a *app) error {
	if f.addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		a.engine.Metrics().WritePrometheus(w)
		var lists []*dnsbl.List
		if l := a.dnsLists.Load(); l != nil {
			lists = *l
		}
		writeDNSMetrics(w, a.resolver, lists)
		writeStoreMetrics(w, a.store)
		writeConnMetrics(w, a.listeners)
		writeReloadMetrics(w, &a.reloads)
	})
	return a.addHTTPService(ctx, "metrics", "--metrics-listen", f.addr, "/metrics", mux)
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
