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
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	_ "github.com/greymilter/greymilter/greylist/pgstore"     // PostgreSQL, for several MX hosts
	_ "github.com/greymilter/greymilter/greylist/sqlitestore" // the embedded default store
	"github.com/greymilter/greymilter/internal/listener"
	"github.com/greymilter/greymilter/internal/sockaddr"
	"github.com/greymilter/greymilter/resolver"
	"github.com/greymilter/greymilter/stats"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// DefaultSocket is where greymilter's milter listens unless told otherwise.
const DefaultSocket = "inet:127.0.0.1:10029"

// summaryEvery is how often the store's contents are counted for /metrics
// at most: counting a million triplets takes a while.
const summaryEvery = 30 * time.Second

// exitUsage is the exit status for bad flags, config or list files, and
// for a database that the operator must repair (damaged, unwritable).
const exitUsage = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand of greymilter.
type command struct {
	name     string
	synopsis string
	// daemon says whether the command talks to the running daemon (or is
	// it), so that an administrator knows what it needs and touches.
	daemon  string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is the table of subcommands; "greymilter FLAGS" means serve.
func commands() []command {
	return []command{
		{"serve", "[serve] [flags]", "is the daemon", "run the milter (and policy server): the default command", runServe},
		{"stats", "stats [flags]", "reads the database file; not the daemon", "decisions by day or hour, the store's size, graphs", runStats},
		{"db", "db COMMAND [flags]", "through the running daemon's control socket; the store itself when none runs", "look into the greylist and change it: explain, list, delete, pass, whitelist, purge, export, import", runDB},
		{"check-config", "check-config [flags]", "reads the configuration; not the daemon", "check flags, config file, lists and patterns; print ok or every problem; exit 0 or 2", runCheckConfig},
		{"version", "version", "not the daemon", "print the version", runVersion},
	}
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		for _, c := range commands() {
			if args[0] == c.name {
				return c.run(args[1:], stdout, stderr)
			}
		}
	}
	return runServe(args, stdout, stderr)
}

// writeUsage writes the usage of greymilter: the commands, then the flags
// of the daemon.
func writeUsage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "An intelligent greylisting milter and policy server for Postfix and Sendmail.\n\nUsage:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  greymilter %s\t%s\t(%s)\n", c.synopsis, c.summary, c.daemon)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n'greymilter COMMAND --help' shows a command's own flags.\n\nFlags of serve and check-config:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "greymilter version: unexpected argument %q\n", args[0])
		return exitUsage
	}
	fmt.Fprintf(stdout, "greymilter %s\n", version)
	return 0
}

// slot is a place in the decision pipeline; steps run slot by slot.
type slot int

const (
	slotBypass slot = iota
	// slotClientName confirms a client name the MTA did not vouch for
	// before any name rule sees it.
	slotClientName
	slotLists
	slotRuntimeWhitelist // entries of `greymilter db whitelist`, after the list files
	slotRoles            // postmaster@ and abuse@: after the blacklists, before any DNS
	// slotRules finds the rules-file line whose settings later steps use.
	slotRules
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
	slotThrottle // rate limit of new triplets, just before they are created
	slotGreylist
	numSlots
)

// module is an optional part of greymilter wired from its own file. A
// fresh module is made for every reading of the configuration (at start,
// by check-config, on each reload), so its flag values are its own.
type module interface {
	// addFlags defines the module's flags.
	addFlags(fs *pflag.FlagSet)
	// check checks the flag values alone: no file, socket or database.
	check() error
	// steps adds the module's decision steps, reading the files its flags
	// name. It runs at start and again for every reload.
	steps(p *pipeline) error
	// start opens the module's services, once, at start, once the engine
	// exists and privileges are dropped.
	start(ctx context.Context, a *app) error
}

// socketModule is a module that binds sockets: listen runs at start before
// privileges are dropped (privileges.go), then start.
type socketModule interface {
	module
	listen(ctx context.Context, a *app) error
}

// moduleType makes a module; title heads its options in the documentation.
type moduleType struct {
	title string
	new   func() module
}

// moduleTypes are the kinds of module, in the order they were registered.
var moduleTypes []moduleType

// register adds a kind of module; call it from an init function.
func register(title string, newModule func() module) {
	moduleTypes = append(moduleTypes, moduleType{title, newModule})
}

// app is a running greymilter: its configuration, engine and services.
type app struct {
	logs  *logging
	log   *slog.Logger
	clock engine.Clock
	// cfg is the configuration greymilter started with: what a reload
	// cannot change (sockets, database) stays as it says.
	cfg *config

	store greylist.Store
	// keyed is what decisions use: store, or under --privacy its wrapper
	// that hashes every key first.
	keyed    greylist.Store
	resolver *resolver.Resolver
	engine   *engine.Engine
	recorder *stats.Recorder
	services []service
	closers  []func() error

	// maintenance self-tests the DNS lists of the pipeline in force.
	maintenance struct {
		sync.Mutex
		stop func()
		wg   sync.WaitGroup
	}
	// reloads says how the last reading of the configuration went.
	reloads reloadStatus
	// inForce is the pipeline deciding now (health and readiness).
	inForce atomic.Pointer[pipeline]

	// metrics is the registry that /metrics serves (metrics.go).
	metrics *prometheus.Registry
	// greylistMetrics and dnsListMetrics outlive reloads: the store
	// operations and DNS list lookups of every pipeline count into them.
	greylistMetrics *greylist.Metrics
	dnsListMetrics  *dnsbl.Metrics
	// serving is set once every service listens.
	serving atomic.Bool

	milterAddr sockaddr.Addr
	milterLn   net.Listener
	runAs      *identity // the --user switched to, or nil
	// listeners are the front ends' guarded listeners, for the metrics.
	listeners []*listener.Limited
}

// service is a long-running part: Serve blocks until Shutdown.
type service struct {
	name     string
	serve    func() error
	shutdown func(ctx context.Context) error
}

func (a *app) addService(s service)   { a.services = append(a.services, s) }
func (a *app) onClose(f func() error) { a.closers = append(a.closers, f) }

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
	dbRecover                                bool
	config                                   string
	showVersion, checkConfig                 bool
}

func (c *coreFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&c.name, "name", "n", "greymilter", "name of this filter, in logs")
	fs.StringVarP(&c.socket, "socket", "s", DefaultSocket, "milter socket: inet:HOST:PORT, inet6:[ADDR]:PORT, unix:PATH (also inet:PORT@HOST, local:PATH); none for a policy server only")
	c.socketMode = 0o660
	fs.Var(&c.socketMode, "socket-mode", "permissions of a unix socket, so that the MTA's user can connect")
	fs.CountVarP(&c.verbose, "verbose", "v", "log more: -v one line per decision, -vv each step's result and the DNS lists' answers, -vvv each milter and policy exchange (in the config file: verbose = N)")
	fs.Var(newChoice(&c.logFormat, "text", "text", "json"), "log-format", "log line format")
	fs.Var(newChoice(&c.logTarget, "stderr", "stderr", "syslog"), "log-target", "where logs go (syslog: the mail facility)")
	fs.StringVar(&c.db, "db", "greymilter.db", "SQLite database file, :memory:, or a postgres:// URL of a database shared by several MX hosts")
	fs.Var(newDuration(&c.dbTimeout, time.Second), "db-timeout", "bound on one operation of a database server (PostgreSQL); past it the decision is answered per --on-error")
	fs.BoolVar(&c.dbRecover, "db-recover", false, "if the SQLite database is damaged, move it aside (FILE.corrupt-TIMESTAMP) and start a fresh one with every row that can still be read")
	fs.Var(newDuration(&c.dbCacheTTL, 5*time.Minute), "db-cache-ttl", "how long a shared database's local cache trusts a passed triplet or auto-whitelisted client")
	fs.Var(newDuration(&c.rules.Delay, greylist.DefaultRules.Delay), "delay", "how long a new triplet waits (seconds, or 5m, 1h...)")
	fs.Var(newLongDuration(&c.rules.RetryWindow, greylist.DefaultRules.RetryWindow), "retry-window", "a triplet that never passed starts again after this")
	fs.Var(newDuration(&c.rules.Penalty, 0), "penalty", "extra wait for each retry before the delay is over (default: the delay in --mode suspicious, capped by --max-wait; 0 in --mode always)")
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
	fs.BoolVar(&c.checkConfig, "check-config", false, "check the configuration, print ok or every problem, and exit (as greymilter check-config)")
	reloadable(fs, "delay", "retry-window", "penalty", "max-wait", "max-age", "purge-unverified", "decision-timeout",
		"ipv4-prefix", "ipv6-prefix", "lookup-by-host", "trusted-networks", "auto-whitelist-clients", "greylist-text", "hostname", "on-error", "dry-run")
}

func (c *coreFlags) check() error {
	var errs []error
	if c.ipv4Prefix < 0 || c.ipv4Prefix > 32 {
		errs = append(errs, flagErrorf("ipv4-prefix", "--ipv4-prefix %d: want 0 to 32", c.ipv4Prefix))
	}
	if c.ipv6Prefix < 0 || c.ipv6Prefix > 128 {
		errs = append(errs, flagErrorf("ipv6-prefix", "--ipv6-prefix %d: want 0 to 128", c.ipv6Prefix))
	}
	if c.autoWhitelist < 0 {
		errs = append(errs, flagErrorf("auto-whitelist-clients", "--auto-whitelist-clients %d: want 0 or more", c.autoWhitelist))
	}
	if err := checkTiming(c.rules); err != nil {
		errs = append(errs, err)
	}
	if c.purgeInterval <= 0 {
		errs = append(errs, flagErrorf("purge-interval", "--purge-interval: must be more than 0"))
	}
	if c.socket != "none" {
		if _, err := sockaddr.Parse(c.socket); err != nil {
			errs = append(errs, flagErrorf("socket", "--socket: %w", err))
		}
	}
	if _, err := c.trustedNetworks(); err != nil {
		errs = append(errs, flagErrorf("trusted-networks", "%w", err))
	}
	return errors.Join(errs...)
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

// runServe is the daemon: greymilter [serve] [flags].
func runServe(args []string, stdout, stderr io.Writer) int {
	// First of all: SIGHUP's default action ends the process, and
	// logrotate may send one at any moment, also while greymilter starts.
	// One that comes before serving is honoured (a reload) once serving.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg := newConfig()
	if code, done := cfg.parseArgs(args, stdout, stderr); done {
		return code
	}
	if cfg.core.checkConfig {
		return checkConfig(cfg, stdout)
	}
	if errs := cfg.load(); len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(stderr, "greymilter: %s\n", cfg.describe(err))
		}
		return exitUsage
	}
	logs, err := newLogging(&cfg.core, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "greymilter: %v\n", err)
		return 1
	}
	defer logs.close()
	slog.SetDefault(logs.root)
	// go-milter logs through the standard logger.
	log.SetFlags(0)
	log.SetOutput(slogWriter{logs.component("milter")})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := build(ctx, cfg, logs)
	if err != nil {
		fmt.Fprintf(stderr, "greymilter: %v\n", err)
		if a != nil {
			a.close()
		}
		if errors.Is(err, errConfig) || errors.Is(err, greylist.ErrCorrupt) || errors.Is(err, greylist.ErrUnwritable) {
			return exitUsage
		}
		return 1
	}
	return a.serve(ctx, stderr, hup)
}

// errConfig marks errors in what the operator wrote (flags, files).
var errConfig = errors.New("configuration error")

// configError wraps err so that the exit status says the input was wrong.
func configError(err error) error { return fmt.Errorf("%w: %w", errConfig, err) }

// build opens what lives as long as the process, in order: the sockets
// (then privileges are dropped), the store, the DNS resolver, the engine
// with the configured pipeline, then the modules' services, and the milter.
func build(ctx context.Context, cfg *config, logs *logging) (*app, error) {
	a := &app{cfg: cfg, logs: logs, log: logs.component("main"), clock: engine.SystemClock{},
		metrics: prometheus.NewRegistry(), greylistMetrics: greylist.NewMetrics(), dnsListMetrics: dnsbl.NewMetrics()}
	a.metrics.MustRegister(a.greylistMetrics, a.dnsListMetrics, newDNSListCollector(a.inForceDNSLists))
	a.metrics.MustRegister(reloadCollectors(&a.reloads)...)
	a.metrics.MustRegister(newConnCollector(a))
	if err := a.bindAndDrop(ctx); err != nil {
		return a, err
	}
	store, keyed, err := openStore(ctx, cfg, logs.component("store")) // privacy.go
	if err != nil {
		return a, err // a closes the sockets already bound
	}
	a.store, a.keyed = store, keyed
	a.onClose(store.Close)
	counter, ok := store.(greylist.Counter)
	if !ok {
		return a, fmt.Errorf("--db %s: this store keeps no decision counts", cfg.core.db)
	}
	if sum, ok := store.(greylist.Summarizer); ok {
		a.metrics.MustRegister(greylist.NewSummaryCollector(func(ctx context.Context) (greylist.Summary, error) {
			return sum.Summary(ctx, cfg.core.autoWhitelist)
		}, summaryEvery, logs.component("store")))
	}
	if h, ok := store.(greylist.Health); ok {
		a.metrics.MustRegister(greylist.HealthCollectors(h)...)
	}
	if c, ok := store.(interface{ Collectors() []prometheus.Collector }); ok {
		a.metrics.MustRegister(c.Collectors()...) // the SQLite store's write faults and file checks
	}
	if a.resolver, err = cfg.resolver.build(a.clock, logs.component("dns")); err != nil {
		return a, configError(err)
	}
	a.metrics.MustRegister(dnsCollectors(a.resolver)...)
	a.log.Info("DNS resolver", "servers", strings.Join(a.resolver.Servers(), ","), "timeout", cfg.resolver.timeout.String())
	p, err := a.pipeline(cfg)
	if err != nil {
		return a, configError(err)
	}
	a.recorder = stats.NewRecorder(counter, logs.component("stats"))
	a.engine = engine.New(engine.Options{Clock: a.clock, Logger: logs.component("engine"),
		Observe: func(at time.Time, v engine.Verdict) { a.recorder.Add(at, v.Action.String(), v.Reason) }})
	a.metrics.MustRegister(a.engine.Metrics())
	a.install(p)
	a.reloads.succeeded(a.clock.Now())
	for _, m := range cfg.modules {
		if err := m.start(ctx, a); err != nil {
			return a, err
		}
	}

	if cfg.core.socket == "none" {
		if len(a.services) == 0 {
			return a, configError(errors.New("--socket none: nothing left to serve (give --policy-socket)"))
		}
		return a, nil
	}
	a.serveMilter()
	return a, nil
}

// serve runs the services until a signal, then shuts down in order (hup
// asks for a reload): stop accepting, answer what is in flight, close the
// store.
func (a *app) serve(ctx context.Context, stderr io.Writer, hup <-chan os.Signal) int {
	recorderCtx, stopRecorder := context.WithCancel(context.Background())
	var recorder sync.WaitGroup
	recorder.Go(func() { a.recorder.Run(recorderCtx, time.Minute) })
	// Purges run on one timer for the whole run, with the rules of the
	// pipeline in force at each tick.
	purgeCtx, stopPurges := context.WithCancel(context.Background())
	var purges sync.WaitGroup
	purges.Go(func() {
		greylist.Maintain(purgeCtx, a.cfg.core.purgeInterval, a.clock.Now, func() *greylist.Greylist { return a.inForce.Load().greylist })
	})

	errs := make(chan error, len(a.services))
	for _, s := range a.services {
		a.log.Log(ctx, levelNotice, "listening", "service", s.name)
		go func() {
			if err := s.serve(); err != nil {
				errs <- fmt.Errorf("%s: %w", s.name, err)
			}
		}()
	}
	a.serving.Store(true)
	if a.milterAddr.Network != "" {
		fmt.Fprintf(stderr, "greymilter %s ready. In Postfix's main.cf:\n    smtpd_milters = %s\n    milter_default_action = tempfail\n", version, postfixSocket(a.milterAddr))
	}

	status := 0
loop:
	for {
		select {
		case <-ctx.Done():
			a.log.Log(context.Background(), levelNotice, "shutting down")
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
	a.stopMaintenance()
	stopPurges()
	purges.Wait()
	stopRecorder()
	recorder.Wait()
	if err := a.close(); err != nil {
		a.log.Error("close", "err", err)
		status = 1
	}
	return status
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
