package main

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/internal/listener"
	"github.com/greymilter/greymilter/internal/sockaddr"
	"github.com/greymilter/greymilter/milter"
	"github.com/greymilter/greymilter/policyd"
)

// Limits of the front ends against clients that would starve or kill
// them: a cap on connections for each front end, and the milter
// connection's timeouts (the policy server has its own idle timeout).

// DefaultMaxConnections is above what a busy Postfix opens to one filter:
// one milter or policy connection per smtpd process, and Postfix starts at
// most default_process_limit (100) of them unless told otherwise.
const DefaultMaxConnections = 500

type frontFlags struct {
	maxConnections                          int
	milterIdleTimeout, milterMessageTimeout time.Duration
}

// limit wraps a front end's listener in the connection cap.
func (a *app) limit(ln net.Listener, name string) *listener.Limited {
	l := listener.New(ln, a.cfg.front.maxConnections, a.logs.component(name), name)
	a.listeners = append(a.listeners, l)
	return l
}

// connCollector reads the front ends' connection counts at scrape time.
type connCollector struct {
	a                           *app
	open, refused, acceptErrors *prometheus.Desc
}

func newConnCollector(a *app) *connCollector {
	labels := []string{"frontend"}
	return &connCollector{
		a:            a,
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

// Collect reads the listeners bound at start; none is added once the
// metrics are served.
func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.a.listeners {
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
	var errs []error
	if f.maxConnections < 1 {
		errs = append(errs, flagErrorf("max-connections", "--max-connections %d: want 1 or more", f.maxConnections))
	}
	if f.milterIdleTimeout <= 0 {
		errs = append(errs, flagErrorf("milter-idle-timeout", "--milter-idle-timeout: must be more than 0"))
	}
	if f.milterMessageTimeout <= 0 {
		errs = append(errs, flagErrorf("milter-message-timeout", "--milter-message-timeout: must be more than 0"))
	}
	return errors.Join(errs...)
}

// listenMilter binds the milter socket (before privileges are dropped).
func (a *app) listenMilter(ctx context.Context) error {
	c := &a.cfg.core
	addr, _ := sockaddr.Parse(c.socket)
	perm, err := a.socketPerm(c.socketMode, a.cfg.privileges.socketGroup, "--socket-group")
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
	a.milterLn = a.limit(ln, "milter")
	return nil
}

// serveMilter adds the milter service on the socket listenMilter bound.
func (a *app) serveMilter() {
	ms := milter.New(milter.Config{
		Decider: a.engine,
		Logger:  a.logs.component("milter"),
		Limits:  milter.Limits{IdleTimeout: a.cfg.front.milterIdleTimeout, MessageTimeout: a.cfg.front.milterMessageTimeout},
	})
	ln := a.milterLn
	a.addService(service{
		name:     "milter " + a.milterAddr.String(),
		serve:    func() error { return ignoreClosed(ms.Serve(context.Background(), ln)) },
		shutdown: ms.Shutdown,
	})
}

// ignoreClosed turns the normal end of a front end's Serve after Shutdown
// into nil.
func ignoreClosed(err error) error {
	if errors.Is(err, milter.ErrServerClosed) || errors.Is(err, policyd.ErrServerClosed) {
		return nil
	}
	return err
}
