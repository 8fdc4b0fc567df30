// Command greymilter is an intelligent greylisting filter for Postfix and
// Sendmail: a milter, and optionally a Postfix policy server, in front of
// one decision engine.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	_ "github.com/greymilter/greymilter/greylist/pgstore"     // PostgreSQL, for several MX hosts
	_ "github.com/greymilter/greymilter/greylist/sqlitestore" // the embedded default store
	"github.com/greymilter/greymilter/internal/sockaddr"
	"github.com/greymilter/greymilter/stats"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// DefaultSocket is where greymilter's milter listens unless told otherwise.
const DefaultSocket = "inet:127.0.0.1:10029"

// summaryEvery is how often the store's contents are counted for /metrics
// at most: counting a million triplets takes a while.
const summaryEvery = 30 * time.Second

// exitUsage is the exit status for bad flags, config or list files.
const exitUsage = 2

func main() {
	if len(os.Args) > 1 && os.Args[1] == "stats" {
		os.Exit(runStats(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

// slot is a place in the decision pipeline; steps run slot by slot.
type slot int

const (
	slotBypass slot = iota
	// slotClientName confirms a client name the MTA did not vouch for
	// before any name rule sees it.
	slotClientName
	slotLists
	slotRoles // postmaster@ and abuse@: after the blacklists, before any DNS
	// slotDNSWL and slotDNSBL are before the known step when a DNSBL
	// rejects or marks: a listing is newer information than a past pass,
	// so it applies to known clients too (and the DNSWL keeps its
	// precedence over the DNSBL).
	slotDNSWL
	slotDNSBL
	slotIdentity // names the triplet's client (SPF identity) before the known lookup
	slotKnown
	// slotDNSWLAfterKnown and slotDNSBLAfterKnown hold the lists when no
	// DNSBL rejects or marks (a DNSWL alone, or a DNSBL in greylist mode,
	// where a known triplet keeps passing): known clients cost no lookups.
	slotDNSWLAfterKnown
	slotDNSBLAfterKnown
	slotSuspicion
	slotGreylist
	numSlots
)

// module is an optional part of greymilter wired from its own file: it
// adds its flags, then, once flags are parsed, its steps and services.
type module struct {
	name     string
	addFlags func(fs *pflag.FlagSet)
	// listen, if set, binds the module's sockets; it runs before
	// privileges are dropped (privileges.go), build after.
	listen func(ctx context.Context, a *app) error
	build  func(ctx context.Context, a *app) error
}

var modules []module

// register adds a module; call it from an init function.
func register(m module) { modules = append(modules, m) }

// app is a running greymilter: its configuration, engine and services.
type app struct {
	log   *slog.Logger
	clock engine.Clock

	steps    [numSlots][]engine.Step
	recorder *stats.Recorder
	services []service
	reloads  []func() error
	closers  []func() error

	// metrics is the registry that /metrics serves (metrics.go).
	metrics *prometheus.Registry
	// serving is set once every service listens.
	serving atomic.Bool

	greylist   *greylist.Greylist
	engine     *engine.Engine
	milterAddr sockaddr.Addr
	milterLn   net.Listener
	runAs      *identity // the --user switched to, or nil
	// dnsResolver is shared by every DNS lookup; use a.resolver() (dnsbl.go).
	dnsResolver *dnsbl.Resolver
	dnsLists    []*dnsbl.List // for their metrics
}

func newApp(logger *slog.Logger) *app {
	return &app{log: logger, clock: engine.SystemClock{}, metrics: prometheus.NewRegistry()}
}

// service is a long-running part: Serve blocks until Shutdown.
type service struct {
	name     string
	serve    func() error
	shutdown func(ctx context.Context) error
}

func (a *app) addStep(s slot, step engine.Step) { a.steps[s] = append(a.steps[s], step) }
func (a *app) addService(s service)             { a.services = append(a.services, s) }
func (a *app) onReload(f func() error)          { a.reloads = append(a.reloads, f) }
func (a *app) onClose(f func() error)           { a.closers = append(a.closers, f) }

// coreFlags are the flags of the core: milter, greylisting and store.
type coreFlags struct {
	name, socket, db, hostname, greylistText string
	socketMode                               modeValue
	verbose                                  int
	logFormat, logTarget, onError            string
	rules                                    greylist.Rules
	purgeInterval, decisionTimeout           time.Duration
	dbTimeout, dbCacheTTL                    time.Duration
	ipv4Prefix, ipv6Prefix                   int
	byHost                                   bool
	trusted                                  []string
	autoWhitelist                            int
	dryRun                                   bool
	config                                   string
	showVersion                              bool
}

func (c *coreFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&c.name, "name", "n", "greymilter", "name of this filter, in logs")
	fs.StringVarP(&c.socket, "socket", "s", DefaultSocket, "milter socket: inet:HOST:PORT, inet6:[ADDR]:PORT, unix:PATH (also inet:PORT@HOST, local:PATH); none for a policy server only")
	c.socketMode = 0o660
	fs.Var(&c.socketMode, "socket-mode", "permissions of a unix socket, so that the MTA's user can connect")
	fs.CountVarP(&c.verbose, "verbose", "v", "log more (repeat: -vv, -vvv)")
	fs.Var(newChoice(&c.logFormat, "text", "text", "json"), "log-format", "log line format")
	fs.Var(newChoice(&c.logTarget, "stderr", "stderr", "syslog"), "log-target", "where logs go (syslog: the mail facility)")
	fs.StringVar(&c.db, "db", "greymilter.db", "SQLite database file, :memory:, or a postgres:// URL of a database shared by several MX hosts")
	fs.Var(newDuration(&c.dbTimeout, time.Second), "db-timeout", "bound on one operation of a database server (PostgreSQL); past it the decision is answered per --on-error")
	fs.Var(newDuration(&c.dbCacheTTL, 5*time.Minute), "db-cache-ttl", "how long a shared database's local cache trusts a passed triplet or auto-whitelisted client")
	fs.Var(newDuration(&c.rules.Delay, greylist.DefaultRules.Delay), "delay", "how long a new triplet waits (seconds, or 5m, 1h...)")
	fs.Var(newLongDuration(&c.rules.RetryWindow, greylist.DefaultRules.RetryWindow), "retry-window", "a triplet that never passed starts again after this")
	fs.Var(newDuration(&c.rules.Penalty, 0), "penalty", "extra wait for each retry before the delay is over")
	fs.Var(newLongDuration(&c.rules.MaxWait, greylist.DefaultRules.MaxWait), "max-wait", "cap of the wait that penalties can build up")
	fs.Var(newLongDuration(&c.rules.MaxAge, greylist.DefaultRules.MaxAge), "max-age", "forget triplets and clients not seen for this long")
	fs.Var(newLongDuration(&c.rules.PurgeUnverified, greylist.DefaultRules.PurgeUnverified), "purge-unverified", "forget triplets that never passed after this long")
	fs.Var(newLongDuration(&c.purgeInterval, time.Hour), "purge-interval", "how often expired state is purged")
	fs.Var(newDuration(&c.decisionTimeout, 10*time.Second), "decision-timeout", "deadline of one decision: its DNS lookups get --dns-timeout of it (at most half), the store the rest; past it the answer is --on-error's")
	fs.IntVar(&c.ipv4Prefix, "ipv4-prefix", greylist.DefaultKeyer.IPv4Prefix, "IPv4 clients are grouped by this prefix length")
	fs.IntVar(&c.ipv6Prefix, "ipv6-prefix", greylist.DefaultKeyer.IPv6Prefix, "IPv6 clients are grouped by this prefix length")
	fs.BoolVar(&c.byHost, "lookup-by-host", false, "key triplets by the exact client address, not its subnet")
	fs.StringSliceVar(&c.trusted, "trusted-networks", []string{"127.0.0.0/8", "::1/128"}, "clients in these networks (CIDR, comma separated or repeated) are never greylisted")
	fs.IntVar(&c.autoWhitelist, "auto-whitelist-clients", 5, "a client that passed greylisting for this many triplets is no longer greylisted (0: off, and passes are not counted)")
	fs.StringVar(&c.greylistText, "greylist-text", engine.DefaultGreylistText, "deferral text; {SECONDS} {CLIENT} {SENDER} {RECIPIENT} are replaced")
	host, _ := os.Hostname()
	fs.StringVar(&c.hostname, "hostname", host, "host name given in the X-Greylist header")
	fs.Var(newChoice(&c.onError, "tempfail", "tempfail", "accept"), "on-error", "answer to the MTA when greymilter fails internally")
	fs.BoolVar(&c.dryRun, "dry-run", false, "decide and log, but let every mail pass")
	fs.StringVar(&c.config, "config", "", "read options from this file (key = value, long flag names); the command line wins")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
}

func (c *coreFlags) check() error {
	if c.ipv4Prefix < 0 || c.ipv4Prefix > 32 {
		return fmt.Errorf("--ipv4-prefix %d: want 0 to 32", c.ipv4Prefix)
	}
	if c.ipv6Prefix < 0 || c.ipv6Prefix > 128 {
		return fmt.Errorf("--ipv6-prefix %d: want 0 to 128", c.ipv6Prefix)
	}
	if c.autoWhitelist < 0 {
		return fmt.Errorf("--auto-whitelist-clients %d: want 0 or more", c.autoWhitelist)
	}
	if err := checkTiming(c.rules); err != nil {
		return err
	}
	if c.purgeInterval <= 0 {
		return fmt.Errorf("--purge-interval: must be more than 0")
	}
	if c.socket != "none" {
		if _, err := sockaddr.Parse(c.socket); err != nil {
			return fmt.Errorf("--socket: %w", err)
		}
	}
	return nil
}

func (c *coreFlags) trustedNetworks() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.trusted {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("--trusted-networks: %q: %w", s, err)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--trusted-networks: %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c *coreFlags) logger(w io.Writer) (*slog.Logger, error) {
	level := slog.LevelInfo
	if c.verbose >= 1 {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch {
	case c.logTarget == "syslog":
		var err error
		if h, err = newSyslogHandler("", "", c.name, opts, c.logFormat == "json"); err != nil {
			return nil, err
		}
	case c.logFormat == "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("filter", c.name), nil
}

// run is main without the exit, for tests.
func run(args []string, stderr io.Writer) int {
	// First of all: SIGHUP's default action ends the process, and
	// logrotate may send one at any moment, also while greymilter starts.
	// One that comes before serving is honoured (a reload) once serving.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := pflag.NewFlagSet("greymilter", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: greymilter [flags]\n       greymilter stats [--db FILE] [--days N] [--hourly] [--png FILE] [--svg FILE]\n\nAn intelligent greylisting milter and policy server for Postfix and Sendmail.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var core coreFlags
	core.add(fs)
	for _, m := range modules {
		m.addFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "greymilter: %v\n", err)
		return exitUsage
	}
	if core.showVersion {
		fmt.Fprintf(stderr, "greymilter %s\n", version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "greymilter: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if core.config != "" {
		if err := applyConfigFile(fs, core.config); err != nil {
			fmt.Fprintf(stderr, "greymilter: %v\n", err)
			return exitUsage
		}
	}
	if err := core.check(); err != nil {
		fmt.Fprintf(stderr, "greymilter: %v\n", err)
		return exitUsage
	}
	logger, err := core.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "greymilter: %v\n", err)
		return 1
	}
	slog.SetDefault(logger)
	// go-milter logs through the standard logger.
	log.SetFlags(0)
	log.SetOutput(slogWriter{logger})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := build(ctx, &core, logger)
	if err != nil {
		fmt.Fprintf(stderr, "greymilter: %v\n", err)
		if a != nil {
			a.close()
		}
		if errors.Is(err, errConfig) {
			return exitUsage
		}
		return 1
	}
	return a.serve(ctx, &core, hup)
}

// errConfig marks errors in what the operator wrote (flags, files).
var errConfig = errors.New("configuration error")

// configError wraps err so that the exit status says the input was wrong.
func configError(err error) error { return fmt.Errorf("%w: %w", errConfig, err) }

func build(ctx context.Context, c *coreFlags, logger *slog.Logger) (*app, error) {
	a := newApp(logger)
	trusted, err := c.trustedNetworks()
	if err != nil {
		return nil, configError(err)
	}
	if err := a.bindAndDrop(ctx, c); err != nil {
		return a, err
	}
	store, err := greylist.Open(ctx, c.db, greylist.Options{Timeout: c.dbTimeout, CacheTTL: c.dbCacheTTL, AutoWhitelist: c.autoWhitelist, Log: logger})
	if err != nil {
		return a, err // a closes the sockets already bound
	}
	a.onClose(store.Close)
	counter, ok := store.(greylist.Counter)
	if !ok {
		return a, fmt.Errorf("--db %s: this store keeps no decision counts", c.db)
	}
	a.recorder = stats.NewRecorder(counter, logger)
	a.greylist = &greylist.Greylist{Store: store, Rules: c.rules, AutoWhitelist: c.autoWhitelist, Log: logger, Metrics: greylist.NewMetrics()}
	a.metrics.MustRegister(a.greylist.Metrics)
	if sum, ok := store.(greylist.Summarizer); ok {
		a.metrics.MustRegister(greylist.NewSummaryCollector(func(ctx context.Context) (greylist.Summary, error) {
			return sum.Summary(ctx, c.autoWhitelist)
		}, summaryEvery, logger))
	}
	if h, ok := store.(greylist.Health); ok {
		a.metrics.MustRegister(greylist.HealthCollectors(h)...)
	}
	g := &engine.Greylisting{
		Greylist: a.greylist,
		Keyer:    greylist.Keyer{IPv4Prefix: c.ipv4Prefix, IPv6Prefix: c.ipv6Prefix, ByHost: c.byHost},
		Text:     c.greylistText,
		Hostname: c.hostname,
	}
	a.addStep(slotBypass, &engine.Bypass{Trusted: trusted})
	a.addStep(slotKnown, g.KnownStep())
	a.addStep(slotGreylist, g.GreylistStep())
	for _, m := range modules {
		if err := m.build(ctx, a); err != nil {
			return a, fmt.Errorf("%s: %w", m.name, err)
		}
	}
	var steps []engine.Step
	for _, ss := range a.steps {
		steps = append(steps, ss...)
	}
	if a.dnsResolver != nil && c.decisionTimeout > 0 && dnsOpts.timeout > c.decisionTimeout/2 {
		return a, configError(fmt.Errorf("--dns-timeout %v: at most half of --decision-timeout %v, so that the store keeps its own time after DNS", dnsOpts.timeout, c.decisionTimeout))
	}
	onError := engine.OnErrorTempfail
	if c.onError == "accept" {
		onError = engine.OnErrorAccept
	}
	a.engine = engine.New(engine.Options{Clock: a.clock, Logger: logger, OnError: onError, DryRun: c.dryRun, Timeout: c.decisionTimeout,
		DNSTimeout: dnsOpts.timeout, Observe: func(at time.Time, v engine.Verdict) { a.recorder.Add(at, v.Action.String(), v.Reason) }}, steps...)
	a.metrics.MustRegister(a.engine.Metrics())

	if c.socket == "none" {
		if len(a.services) == 0 {
			return a, configError(errors.New("--socket none: nothing left to serve (give --policy-socket)"))
		}
		return a, nil
	}
	a.serveMilter()
	return a, nil
}

// serve runs the services until a signal, then shuts down in order (hup
// asks for a reload):
// stop accepting, answer what is in flight, close the store.
func (a *app) serve(ctx context.Context, c *coreFlags, hup <-chan os.Signal) int {
	maintainCtx, stopMaintain := context.WithCancel(context.Background())
	var maint sync.WaitGroup
	maint.Go(func() { a.greylist.Maintain(maintainCtx, c.purgeInterval, a.clock.Now) })
	maint.Go(func() { a.recorder.Run(maintainCtx, time.Minute) })

	errs := make(chan error, len(a.services))
	for _, s := range a.services {
		a.log.Info("listening", "service", s.name)
		go func() {
			if err := s.serve(); err != nil {
				errs <- fmt.Errorf("%s: %w", s.name, err)
			}
		}()
	}
	a.serving.Store(true)
	if a.milterAddr.Network != "" {
		fmt.Fprintf(os.Stderr, "greymilter %s ready. In Postfix's main.cf:\n    smtpd_milters = %s\n    milter_default_action = tempfail\n", version, postfixSocket(a.milterAddr))
	}

	status := 0
loop:
	for {
		select {
		case <-ctx.Done():
			a.log.Info("shutting down")
			break loop
		case err := <-errs:
			a.log.Error("service failed", "err", err)
			status = 1
			break loop
		case <-hup:
			a.reload()
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, s := range a.services {
		if err := s.shutdown(shutdownCtx); err != nil {
			a.log.Warn("shutdown", "service", s.name, "err", err)
		}
	}
	stopMaintain()
	maint.Wait()
	if err := a.close(); err != nil {
		a.log.Error("close", "err", err)
		status = 1
	}
	return status
}

func (a *app) reload() {
	a.log.Info("reloading (SIGHUP)")
	for _, f := range a.reloads {
		if err := f(); err != nil {
			a.log.Error("reload failed; the previous configuration stays in force", "err", err)
		}
	}
}

func (a *app) close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	return errors.Join(errs...)
}

// postfixSocket writes a socket address the way Postfix's main.cf wants it.
func postfixSocket(a sockaddr.Addr) string {
	if a.Network == "unix" {
		return "unix:" + a.Address
	}
	return "inet:" + a.Address
}

// slogWriter turns standard-library log lines into slog warnings.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}
