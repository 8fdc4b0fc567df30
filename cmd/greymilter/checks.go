package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/checks"
	"github.com/greymilter/greymilter/engine"
)

// Smart greylisting: the SPF identity step (on by default) and, in
// --mode suspicious, the suspicion step with its scores and the dynamic
// host name patterns (read at start, again on SIGHUP).
func init() {
	register("Suspicion checks and SPF", func() module { return &checkFlags{} })
}

type checkFlags struct {
	mode         string
	threshold    int
	spfIdentity  bool
	spfTimeout   time.Duration
	patternFiles []string
	noDefault    bool
	scores       checks.Scores
}

func (f *checkFlags) addFlags(fs *pflag.FlagSet) {
	fs.Var(newChoice(&f.mode, "always", "always", "suspicious"), "mode", "always: greylist every unknown triplet; suspicious: only senders whose suspicion score reaches --suspicion-threshold")
	fs.IntVar(&f.threshold, "suspicion-threshold", 2, "in --mode suspicious, senders scoring this or more are greylisted")
	fs.BoolVar(&f.spfIdentity, "spf-identity", true, "when SPF passes, key the triplet by the sender's domain (spf:example.com) instead of the client's subnet, so that a provider retrying from another address of its pool passes")
	fs.Var(newDuration(&f.spfTimeout, checks.DefaultSPFTimeout), "spf-timeout", "deadline of one SPF evaluation, at most --dns-timeout (SPF shares the decision's DNS budget); past it SPF abstains")
	fs.Var(fileList{&f.patternFiles}, "dynamic-patterns", "file of dynamic and static host name patterns, added to the built-in ones (repeatable)")
	fs.BoolVar(&f.noDefault, "no-default-dynamic-patterns", false, "do not use the built-in dynamic host name patterns")
	d := checks.DefaultScores
	fs.IntVar(&f.scores.HeloSameDomain, "score-helo-domain", d.HeloSameDomain, "score of a HELO in the client name's domain, or the client's address literal")
	fs.IntVar(&f.scores.HeloMismatch, "score-helo-mismatch", d.HeloMismatch, "score of a HELO unrelated to the client's name")
	fs.IntVar(&f.scores.NoReverse, "score-no-rdns", d.NoReverse, "score of a client without a verified reverse name")
	fs.IntVar(&f.scores.Dynamic, "score-dynamic", d.Dynamic, "score of a dynamic-looking client name")
	fs.IntVar(&f.scores.SenderIsRecipient, "score-sender-is-recipient", d.SenderIsRecipient, "score of a sender equal to the recipient")
	fs.IntVar(&f.scores.SPFFail, "score-spf-fail", d.SPFFail, "score of SPF fail")
	fs.IntVar(&f.scores.SPFSoftFail, "score-spf-softfail", d.SPFSoftFail, "score of SPF softfail")
	fs.IntVar(&f.scores.SPFPass, "score-spf-pass", d.SPFPass, "score of SPF pass (below 0 lowers the score)")
	reloadable(fs, "mode", "suspicion-threshold", "spf-identity", "spf-timeout", "dynamic-patterns", "no-default-dynamic-patterns",
		"score-helo-domain", "score-helo-mismatch", "score-no-rdns", "score-dynamic", "score-sender-is-recipient", "score-spf-fail", "score-spf-softfail", "score-spf-pass")
}

func (f *checkFlags) check() error {
	if f.spfTimeout <= 0 {
		return flagErrorf("spf-timeout", "--spf-timeout: must be more than 0")
	}
	return nil
}

func (f *checkFlags) start(context.Context, *app) error { return nil }

func (f *checkFlags) steps(p *pipeline) error {
	// Read the pattern files whatever the mode, so that a bad one is
	// reported before it matters.
	patterns, err := checks.LoadPatterns(!f.noDefault, f.patternFiles...)
	if err != nil {
		return err
	}
	suspicious := f.mode == "suspicious"
	if !suspicious && !f.spfIdentity {
		return nil
	}
	// SPF runs within the decision's DNS budget: a longer timeout of its
	// own would never be waited for.
	spfCheck := &checks.SPF{Resolver: p.resolver, Timeout: min(f.spfTimeout, p.dnsTimeout)}
	if f.spfIdentity {
		p.add(slotIdentity, &engine.SPFIdentity{SPF: spfCheck})
	}
	log := p.logs.component("checks")
	if !suspicious {
		if len(f.patternFiles) > 0 {
			log.Warn("--dynamic-patterns has no effect in --mode always")
		}
		return nil
	}
	s := f.scores
	if s.SPFFail == 0 && s.SPFSoftFail == 0 && s.SPFPass == 0 {
		spfCheck = nil // SPF counts for nothing: spare its lookups
	}
	checker := checks.NewChecker(s, patterns, p.resolver)
	p.add(slotSuspicion, &engine.Suspicion{Checker: checker, SPF: spfCheck, Threshold: f.threshold})
	log.Info("suspicious mode", "threshold", f.threshold, "scores", formatScores(s), "dynamic_patterns", strings.Join(f.patternFiles, ","))
	return nil
}

func formatScores(s checks.Scores) string {
	return fmt.Sprintf("helo-domain=%d helo-mismatch=%d no-rdns=%d dynamic=%d sender-is-recipient=%d spf-fail=%d spf-softfail=%d spf-pass=%d",
		s.HeloSameDomain, s.HeloMismatch, s.NoReverse, s.Dynamic, s.SenderIsRecipient, s.SPFFail, s.SPFSoftFail, s.SPFPass)
}
