package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/rules"
)

// The rules file (--rules), read with the rest of the configuration: at
// start (a bad line exits 2 naming FILE:LINE), by check-config, and on
// SIGHUP (a bad line keeps the configuration in force and is logged); and
// --bypass-verified-tls.
func init() {
	register("Rules and TLS", func() module { return &rulesFlags{} })
}

type rulesFlags struct {
	path        string
	verifiedTLS bool
}

func (f *rulesFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.path, "rules", "", "rules file: lines MATCHES => SETTINGS, the first that matches sets delay, retry-window, mode, action or text for the mail (see README, Rules)")
	fs.BoolVar(&f.verifiedTLS, "bypass-verified-tls", false, "pass clients whose TLS certificate the MTA verified (Sendmail {verify} OK; Postfix {cert_subject}, ccert_subject)")
	reloadable(fs, "rules", "bypass-verified-tls")
}

func (f *rulesFlags) check() error { return nil }

func (f *rulesFlags) steps(p *pipeline) error {
	if f.verifiedTLS {
		p.add(slotBypass, engine.VerifiedTLS{})
	}
	if f.path == "" {
		return nil
	}
	log := p.logs.component("rules")
	// dnsbl matches are looked up through the shared resolver and cache.
	set, err := rules.Load(f.path, rules.Options{Resolver: p.resolver, Log: log})
	if err != nil {
		return err
	}
	log.Info("rules loaded", "file", f.path, "rules", set.Len())
	p.add(slotRules, &engine.Rules{Set: set})
	return nil
}

func (f *rulesFlags) start(context.Context, *app) error { return nil }
