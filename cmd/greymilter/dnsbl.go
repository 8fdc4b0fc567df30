package main

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/resolver"
)

// The DNS resolver and the DNS lists (DNSWL and DNSBL steps). The resolver
// is built once at start, before the modules, so that the lists, SPF and
// reverse DNS checks share one cache.
func init() {
	register("DNS lists", func() module { return &dnsFlags{} })
}

// resolverFlags configure the caching resolver every DNS lookup goes
// through; changing them needs a restart.
type resolverFlags struct {
	servers        []string
	timeout        time.Duration
	minTTL, maxTTL time.Duration
	cacheSize      int
}

func (f *resolverFlags) add(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.servers, "dns", nil, "DNS server to ask, HOST:PORT (repeat or comma separate for several, asked round-robin); default: the nameservers of /etc/resolv.conf")
	fs.Var(newDuration(&f.timeout, resolver.DefaultTimeout), "dns-timeout", "DNS budget of one decision: its lookups (SPF, reverse name, DNS lists) run at once and what has not answered by then abstains; at most half of --decision-timeout")
	fs.Var(newDuration(&f.minTTL, 0), "dns-min-ttl", "keep DNS answers cached at least this long")
	fs.Var(newDuration(&f.maxTTL, resolver.DefaultMaxTTL), "dns-max-ttl", "keep DNS answers cached at most this long")
	fs.IntVar(&f.cacheSize, "dns-cache-size", resolver.DefaultCacheSize, "number of DNS answers cached (0: no cache)")
}

func (f *resolverFlags) check() error {
	var errs []error
	if f.cacheSize < 0 {
		errs = append(errs, flagErrorf("dns-cache-size", "--dns-cache-size %d: want 0 or more", f.cacheSize))
	}
	if f.timeout <= 0 {
		errs = append(errs, flagErrorf("dns-timeout", "--dns-timeout: must be more than 0"))
	}
	if f.maxTTL <= 0 || f.minTTL > f.maxTTL {
		errs = append(errs, flagErrorf("dns-max-ttl", "--dns-min-ttl %v, --dns-max-ttl %v: want 0 <= min <= max, max > 0", f.minTTL, f.maxTTL))
	}
	return errors.Join(errs...)
}

// build makes the resolver of checked flags.
func (f *resolverFlags) build(clock resolver.Clock, log *slog.Logger) (*resolver.Resolver, error) {
	size := f.cacheSize
	if size == 0 {
		size = -1 // resolver: negative disables the cache
	}
	r, err := resolver.New(resolver.Config{
		Servers:   f.servers,
		Timeout:   f.timeout,
		MinTTL:    f.minTTL,
		MaxTTL:    f.maxTTL,
		CacheSize: size,
		Clock:     clock,
		Logger:    log,
	})
	if err != nil {
		return nil, flagErrorf("dns", "--dns: %w", err)
	}
	return r, nil
}

type dnsFlags struct {
	addbl       []string
	policy      string
	blThreshold int
	action      string
	text, ecode string
	code        int
	replies     []string
	score       int
	addwl       []string
	wlThreshold int

	selfTestInterval time.Duration
}

func (f *dnsFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&f.addbl, "addbl", "a", nil, "DNS block list zone (repeatable); ZONE=FILTER limits the answers that count: 127.0.0.2, 127.0.0.2-127.0.0.11, 127.0.0.8/29, comma separated; a trailing :score=N is the list's score under --dnsbl-action score")
	fs.Var(newChoice(&f.policy, "any", "any", "all", "majority"), "policy", "when the block lists that answered list a client")
	fs.IntVar(&f.blThreshold, "dnsbl-threshold", 0, "list a client when at least this many block lists list it (instead of --policy; 0: use --policy)")
	fs.Var(newChoice(&f.action, "reject", "reject", "greylist", "mark", "score"), "dnsbl-action", "what a block listing does: reject, greylist whatever else says, mark with an X-RBL-Warning header, or score: add --score-dnsbl to the suspicion score (rejected at --reject-threshold)")
	fs.IntVar(&f.score, "score-dnsbl", 3, "with --dnsbl-action score, what a listing adds to the suspicion score (per list: --addbl ZONE:score=N)")
	fs.StringVar(&f.text, "dnsbl-text", engine.DefaultDNSBLText, "rejection text; {ADDR} {DNSBL} {TXT} (the list's reason) {SENDER} {RECIPIENT} are replaced")
	fs.IntVar(&f.code, "dnsbl-code", engine.DefaultDNSBLCode, "rejection SMTP code")
	fs.StringVar(&f.ecode, "dnsbl-ecode", engine.DefaultDNSBLECode, "rejection enhanced status code")
	fs.StringArrayVar(&f.replies, "dnsbl-reply", nil, "a block list's own rejection, ZONE=[CODE [ECODE]] TEXT (repeatable; TEXT as --dnsbl-text)")

	fs.StringArrayVar(&f.addwl, "addwl", nil, "DNS allow list zone (repeatable, ZONE=FILTER as for --addbl); listed clients pass without greylisting")
	fs.IntVar(&f.wlThreshold, "dnswl-threshold", 1, "pass a client that at least this many allow lists list")
	fs.Var(newLongDuration(&f.selfTestInterval, time.Hour), "dns-selftest-interval", "how often the DNS lists' RFC 5782 self-test runs (also at start); an allow list that fails it is suspended until it passes")
	reloadable(fs, "addbl", "policy", "dnsbl-threshold", "dnsbl-action", "score-dnsbl", "dnsbl-text", "dnsbl-code", "dnsbl-ecode", "dnsbl-reply", "addwl", "dnswl-threshold", "dns-selftest-interval")
}

func (f *dnsFlags) check() error {
	var errs []error
	if f.blThreshold < 0 {
		errs = append(errs, flagErrorf("dnsbl-threshold", "--dnsbl-threshold %d: want 0 or more", f.blThreshold))
	}
	if f.selfTestInterval <= 0 {
		errs = append(errs, flagErrorf("dns-selftest-interval", "--dns-selftest-interval: must be more than 0"))
	}
	if f.wlThreshold < 1 {
		errs = append(errs, flagErrorf("dnswl-threshold", "--dnswl-threshold %d: want 1 or more", f.wlThreshold))
	}
	if f.code < 400 || f.code > 599 {
		errs = append(errs, flagErrorf("dnsbl-code", "--dnsbl-code %d: want a 4xx or 5xx code", f.code))
	}
	if !strings.HasPrefix(f.ecode, strconv.Itoa(f.code/100)+".") || strings.Count(f.ecode, ".") != 2 {
		errs = append(errs, flagErrorf("dnsbl-ecode", "--dnsbl-ecode %q: want X.Y.Z of the same class as --dnsbl-code %d", f.ecode, f.code))
	}
	_, wlErr := zones(f.addwl, "addwl")
	bl, blErr := zones(f.addbl, "addbl")
	errs = append(errs, wlErr, blErr)
	if len(f.addbl) == 0 && len(f.replies) > 0 {
		errs = append(errs, flagErrorf("dnsbl-reply", "--dnsbl-reply without --addbl"))
	}
	if blErr == nil && len(f.addbl) > 0 {
		for _, r := range f.replies {
			if err := dnsbl.ParseReply(r, bl); err != nil {
				errs = append(errs, flagErrorf("dnsbl-reply", "--dnsbl-reply: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// zones parses the zone specs of a flag, reporting each bad one.
func zones(specs []string, flag string) ([]dnsbl.Zone, error) {
	out := make([]dnsbl.Zone, 0, len(specs))
	var errs []error
	for _, s := range specs {
		z, err := dnsbl.ParseZone(s)
		if err != nil {
			errs = append(errs, flagErrorf(flag, "--%s: %w", flag, err))
			continue
		}
		out = append(out, z)
	}
	return out, errors.Join(errs...)
}

func (f *dnsFlags) steps(p *pipeline) error {
	p.add(slotClientName, &engine.ConfirmName{Resolver: p.resolver})
	p.selfTestInterval = f.selfTestInterval
	action, _ := engine.ParseDNSBLAction(f.action)
	wlSlot, blSlot := slotDNSWLAfterKnown, slotDNSBLAfterKnown
	// In greylist and score mode a listing only makes a client wait, which
	// a known triplet did already: known clients cost no lookups.
	if len(f.addbl) > 0 && action != engine.DNSBLGreylist && action != engine.DNSBLScore {
		wlSlot, blSlot = slotDNSWL, slotDNSBL
	}
	if len(f.addwl) > 0 {
		wl, err := f.list(p, f.addwl, nil, dnsbl.Threshold(f.wlThreshold), "addwl", dnsbl.NewAllowList)
		if err != nil {
			return err
		}
		p.add(wlSlot, &engine.DNSWL{List: wl})
		p.dnsLists = append(p.dnsLists, wl)
	}
	if len(f.addbl) > 0 {
		policy, _ := dnsbl.ParsePolicy(f.policy)
		if f.blThreshold > 0 {
			policy = dnsbl.Threshold(f.blThreshold)
		}
		bl, err := f.list(p, f.addbl, f.replies, policy, "addbl", dnsbl.NewList)
		if err != nil {
			return err
		}
		p.add(blSlot, &engine.DNSBL{List: bl, Action: action, Code: f.code, ECode: f.ecode, Text: f.text, Score: f.score})
		p.dnsLists = append(p.dnsLists, bl)
	}
	return nil
}

func (f *dnsFlags) start(context.Context, *app) error { return nil }

// list makes a DNS list of zone specs with their own replies.
func (f *dnsFlags) list(p *pipeline, specs, replies []string, policy dnsbl.Policy, flag string,
	newList func(*resolver.Resolver, dnsbl.Policy, *slog.Logger, ...dnsbl.Zone) *dnsbl.List) (*dnsbl.List, error) {
	zs, err := zones(specs, flag)
	if err != nil {
		return nil, err
	}
	for _, r := range replies {
		if err := dnsbl.ParseReply(r, zs); err != nil {
			return nil, flagErrorf("dnsbl-reply", "--dnsbl-reply: %w", err)
		}
	}
	names := make([]string, len(zs))
	for i, z := range zs {
		names[i] = z.Name
	}
	log := p.logs.component("dns")
	log.Info("DNS lists", "flag", "--"+flag, "zones", strings.Join(names, ","), "policy", policy.String())
	return newList(p.resolver, policy, log, zs...), nil
}
