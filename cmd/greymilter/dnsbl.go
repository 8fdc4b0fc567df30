package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/engine"
)

// The DNS resolver and the DNS lists (DNSWL and DNSBL steps). The resolver
// is built on first use by whichever module needs it first (a.resolver), so
// that the lists, SPF and reverse DNS checks share one cache.
var dnsOpts dnsFlags

func init() {
	register(module{name: "dns", addFlags: dnsOpts.add, build: dnsOpts.build})
}

type dnsFlags struct {
	servers        []string
	timeout        time.Duration
	minTTL, maxTTL time.Duration
	cacheSize      int

	addbl       []string
	policy      string
	blThreshold int
	action      string
	text, ecode string
	code        int
	replies     []string
	addwl       []string
	wlThreshold int

	selfTestInterval time.Duration
}

func (f *dnsFlags) add(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.servers, "dns", nil, "DNS server to ask, HOST:PORT (repeat or comma separate for several, asked round-robin); default: the nameservers of /etc/resolv.conf")
	fs.Var(newDuration(&f.timeout, dnsbl.DefaultTimeout), "dns-timeout", "DNS budget of one decision: its lookups (SPF, reverse name, DNS lists) run at once and what has not answered by then abstains; at most half of --decision-timeout")
	fs.Var(newDuration(&f.minTTL, 0), "dns-min-ttl", "keep DNS answers cached at least this long")
	fs.Var(newDuration(&f.maxTTL, dnsbl.DefaultMaxTTL), "dns-max-ttl", "keep DNS answers cached at most this long")
	fs.IntVar(&f.cacheSize, "dns-cache-size", dnsbl.DefaultCacheSize, "number of DNS answers cached (0: no cache)")

	fs.StringArrayVarP(&f.addbl, "addbl", "a", nil, "DNS block list zone (repeatable); ZONE=FILTER limits the answers that count: 127.0.0.2, 127.0.0.2-127.0.0.11, 127.0.0.8/29, comma separated")
	fs.Var(newChoice(&f.policy, "any", "any", "all", "majority"), "policy", "when the block lists that answered list a client")
	fs.IntVar(&f.blThreshold, "dnsbl-threshold", 0, "list a client when at least this many block lists list it (instead of --policy; 0: use --policy)")
	fs.Var(newChoice(&f.action, "reject", "reject", "greylist", "mark"), "dnsbl-action", "what a block listing does: reject, greylist whatever else says, or mark with an X-RBL-Warning header")
	fs.StringVar(&f.text, "dnsbl-text", engine.DefaultDNSBLText, "rejection text; {ADDR} {DNSBL} {TXT} (the list's reason) {SENDER} {RECIPIENT} are replaced")
	fs.IntVar(&f.code, "dnsbl-code", engine.DefaultDNSBLCode, "rejection SMTP code")
	fs.StringVar(&f.ecode, "dnsbl-ecode", engine.DefaultDNSBLECode, "rejection enhanced status code")
	fs.StringArrayVar(&f.replies, "dnsbl-reply", nil, "a block list's own rejection, ZONE=[CODE [ECODE]] TEXT (repeatable; TEXT as --dnsbl-text)")

	fs.StringArrayVar(&f.addwl, "addwl", nil, "DNS allow list zone (repeatable, ZONE=FILTER as for --addbl); listed clients pass without greylisting")
	fs.IntVar(&f.wlThreshold, "dnswl-threshold", 1, "pass a client that at least this many allow lists list")
	fs.Var(newLongDuration(&f.selfTestInterval, time.Hour), "dns-selftest-interval", "how often the DNS lists' RFC 5782 self-test runs (also at start); an allow list that fails it is suspended until it passes")
}

func (f *dnsFlags) build(_ context.Context, a *app) error {
	if err := f.check(); err != nil {
		return configError(err)
	}
	res, err := a.resolver()
	if err != nil {
		return err
	}
	a.addStep(slotClientName, &engine.ConfirmName{Resolver: res})
	action, _ := engine.ParseDNSBLAction(f.action)
	wlSlot, blSlot := slotDNSWLAfterKnown, slotDNSBLAfterKnown
	if len(f.addbl) > 0 && action != engine.DNSBLGreylist {
		wlSlot, blSlot = slotDNSWL, slotDNSBL
	}
	var lists []*dnsbl.List
	if len(f.addwl) > 0 {
		wl, err := f.list(a, f.addwl, dnsbl.Threshold(f.wlThreshold), "--addwl", dnsbl.NewAllowList)
		if err != nil {
			return err
		}
		a.addStep(wlSlot, &engine.DNSWL{List: wl})
		lists = append(lists, wl)
	}
	if len(f.addbl) > 0 {
		policy, _ := dnsbl.ParsePolicy(f.policy)
		if f.blThreshold > 0 {
			policy = dnsbl.Threshold(f.blThreshold)
		}
		bl, err := f.list(a, f.addbl, policy, "--addbl", dnsbl.NewList)
		if err != nil {
			return err
		}
		for _, r := range f.replies {
			if err := dnsbl.ParseReply(r, bl.Zones()); err != nil {
				return configError(fmt.Errorf("--dnsbl-reply: %w", err))
			}
		}
		a.addStep(blSlot, &engine.DNSBL{List: bl, Action: action, Code: f.code, ECode: f.ecode, Text: f.text})
		lists = append(lists, bl)
	} else if len(f.replies) > 0 {
		return configError(fmt.Errorf("--dnsbl-reply without --addbl"))
	}
	if len(lists) > 0 {
		a.dnsLists = lists
		m := dnsbl.NewMetrics()
		for _, l := range lists {
			l.Instrument(m)
		}
		a.metrics.MustRegister(m, newDNSListCollector(lists))
		a.addService(selfTestService(lists, f.selfTestInterval))
	}
	return nil
}

// selfTestService runs the RFC 5782 self-test of every list once the app
// serves, without holding up the start, and then every interval; failures
// are logged warnings and counted (an allow list is also suspended).
func selfTestService(lists []*dnsbl.List, interval time.Duration) service {
	ctx, cancel := context.WithCancel(context.Background())
	return service{
		name: "DNS list self-test",
		serve: func() error {
			var wg sync.WaitGroup
			for _, l := range lists {
				wg.Go(func() { l.RunSelfTests(ctx, interval) })
			}
			wg.Wait()
			return nil
		},
		shutdown: func(context.Context) error { cancel(); return nil },
	}
}

func (f *dnsFlags) check() error {
	if f.cacheSize < 0 {
		return fmt.Errorf("--dns-cache-size %d: want 0 or more", f.cacheSize)
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--dns-timeout: must be more than 0")
	}
	if f.maxTTL <= 0 || f.minTTL > f.maxTTL {
		return fmt.Errorf("--dns-min-ttl %v, --dns-max-ttl %v: want 0 <= min <= max, max > 0", f.minTTL, f.maxTTL)
	}
	if f.blThreshold < 0 {
		return fmt.Errorf("--dnsbl-threshold %d: want 0 or more", f.blThreshold)
	}
	if f.selfTestInterval <= 0 {
		return fmt.Errorf("--dns-selftest-interval: must be more than 0")
	}
	if f.wlThreshold < 1 {
		return fmt.Errorf("--dnswl-threshold %d: want 1 or more", f.wlThreshold)
	}
	if f.code < 400 || f.code > 599 {
		return fmt.Errorf("--dnsbl-code %d: want a 4xx or 5xx code", f.code)
	}
	if !strings.HasPrefix(f.ecode, strconv.Itoa(f.code/100)+".") || strings.Count(f.ecode, ".") != 2 {
		return fmt.Errorf("--dnsbl-ecode %q: want X.Y.Z of the same class as --dnsbl-code %d", f.ecode, f.code)
	}
	return nil
}

func (f *dnsFlags) list(a *app, specs []string, policy dnsbl.Policy, flag string,
	newList func(*dnsbl.Resolver, dnsbl.Policy, *slog.Logger, ...dnsbl.Zone) *dnsbl.List) (*dnsbl.List, error) {
	zones := make([]dnsbl.Zone, 0, len(specs))
	for _, s := range specs {
		z, err := dnsbl.ParseZone(s)
		if err != nil {
			return nil, configError(fmt.Errorf("%s: %w", flag, err))
		}
		zones = append(zones, z)
	}
	res, err := a.resolver()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(zones))
	for i, z := range zones {
		names[i] = z.Name
	}
	a.log.Info("DNS lists", "flag", flag, "zones", strings.Join(names, ","), "policy", policy.String())
	return newList(res, policy, a.log, zones...), nil
}

// resolver returns the app's caching DNS resolver, built from the --dns
// flags on first use. Every DNS lookup of greymilter should go through it.
func (a *app) resolver() (*dnsbl.Resolver, error) {
	if a.dnsResolver != nil {
		return a.dnsResolver, nil
	}
	f := &dnsOpts
	if err := f.check(); err != nil {
		return nil, configError(err)
	}
	size := f.cacheSize
	if size == 0 {
		size = -1 // dnsbl: negative disables the cache
	}
	r, err := dnsbl.NewResolver(dnsbl.Config{
		Servers:   f.servers,
		Timeout:   f.timeout,
		MinTTL:    f.minTTL,
		MaxTTL:    f.maxTTL,
		CacheSize: size,
		Clock:     a.clock,
		Logger:    a.log,
	})
	if err != nil {
		return nil, configError(fmt.Errorf("--dns: %w", err))
	}
	a.log.Info("DNS resolver", "servers", strings.Join(r.Servers(), ","), "timeout", f.timeout.String())
	a.dnsResolver = r
	a.metrics.MustRegister(dnsCollectors(r)...)
	return r, nil
}
