package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/internal/listener"
	"github.com/greymilter/greymilter/internal/sockaddr"
	"github.com/greymilter/greymilter/milter"
)

// Limits of the front ends against clients that would starve or kill
// them: a cap on connections for each front end, and the milter
// connection's timeouts (the policy server has its own idle timeout).
func init() {
	register(module{name: "front ends", addFlags: front.add, build: func(_ context.Context, a *app) error {
		a.metrics.MustRegister(newConnCollector())
		return nil
	}})
}

// DefaultMaxConnections is above what a busy Postfix opens to one filter:
// one milter or policy connection per smtpd process, and Postfix starts at
// most default_process_limit (100) of them unless told otherwise.
const DefaultMaxConnections = 500

var front frontFlags

type frontFlags struct {
	maxConnections                          int
	milterIdleTimeout, milterMessageTimeout time.Duration

	// listeners are the front ends' guarded listeners, for the metrics.
	listeners []*listener.Limited
}

// limit wraps a front end's listener in the connection cap.
func (f *frontFlags) limit(a *app, ln net.Listener, name string) *listener.Limited {
	l := listener.New(ln, f.maxConnections, a.log, name)
	f.listeners = append(f.listeners, l)
	return l
}

// connCollector reads the front ends' connection counts at scrape time.
type connCollector struct {
	open, refused, acceptErrors *prometheus.Desc
}

func newConnCollector() *connCollector {
	labels := []string{"frontend"}
	return &connCollector{
		open:         prometheus.NewDesc("greymilter_connections_open", "Connections open now, per front end.", labels, nil),
		refused:      prometheus.NewDesc("greymilter_connections_refused_total", "Connections closed at once because --max-connections were open.", labels, nil),
		acceptErrors: prometheus.NewDesc("greymilter_accept_errors_total", "Failed accepts (out of file descriptors...), retried after a pause.", labels, nil),
	}
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.refused
	ch <- c.acceptErrors
}

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range front.listeners {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(l.Open()), l.Name())
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(l.Refused()), l.Name())
		ch <- prometheus.MustNewConstMetric(c.acceptErrors, prometheus.CounterValue, float64(l.AcceptErrors()), l.Name())
	}
}

func (f *frontFlags) add(fs *pflag.FlagSet) {
	fs.IntVar(&f.maxConnections, "max-connections", DefaultMaxConnections, "most connections open at once on each front end (milter, policy); over it a new connection is closed at once and the MTA applies its default action to that session")
	fs.Var(newDuration(&f.milterIdleTimeout, milter.DefaultLimits.IdleTimeout), "milter-idle-timeout", "close a milter connection when the MTA sends nothing for this long between commands; keep it above Postfix's smtpd_timeout (300s)")
	fs.Var(newDuration(&f.milterMessageTimeout, milter.DefaultLimits.MessageTimeout), "milter-message-timeout", "the same after a RCPT, while the MTA receives the message (greymilter does not ask for the body)")
}

func (f *frontFlags) check() error {
	if f.maxConnections < 1 {
		return fmt.Errorf("--max-connections %d: want 1 or more", f.maxConnections)
	}
	if f.milterIdleTimeout <= 0 || f.milterMessageTimeout <= 0 {
		return fmt.Errorf("--milter-idle-timeout and --milter-message-timeout: must be more than 0")
	}
	return nil
}

// listenMilter binds the milter socket (before privileges are dropped).
func (a *app) listenMilter(ctx context.Context, c *coreFlags) error {
	addr, _ := sockaddr.Parse(c.socket)
	perm, err := a.socketPerm(c.socketMode, privileges.socketGroup, "--socket-group")
	if err != nil {
		return err
	}
	ln, err := sockaddr.ListenPerm(ctx, addr, perm)
	if err != nil {
		return err
	}
	if addr.Network != "unix" {
		addr.Address = ln.Addr().String() // the real port when asked for port 0
	}
	a.milterAddr = addr
	// Closed again by the service's shutdown; this one covers a start
	// that fails later.
	a.onClose(func() error { ln.Close(); return nil })
	a.milterLn = front.limit(a, ln, "milter")
	return nil
}

// serveMilter adds the milter service on the socket listenMilter bound.
func (a *app) serveMilter() {
	ms := milter.New(a.engine, a.log)
	ms.Limits = milter.Limits{IdleTimeout: front.milterIdleTimeout, MessageTimeout: front.milterMessageTimeout}
	ln := a.milterLn
	a.addService(service{name: "milter " + a.milterAddr.String(), serve: func() error { return ms.Serve(ln) }, shutdown: ms.Shutdown})
}
