package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/checks"
	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/rules"
)

// Smart greylisting: the SPF identity step (on by default) and the
// suspicion step with its scores and the dynamic host name patterns (read
// at start, again on SIGHUP), which greylists in --mode suspicious (or a
// rule's) and rejects at --reject-threshold.
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
	// rejectThreshold rejects a client a DNSBL in score mode listed once
	// the whole score reaches it.
	rejectThreshold int
}

func (f *checkFlags) addFlags(fs *pflag.FlagSet) {
	fs.Var(newChoice(&f.mode, "always", "always", "suspicious"), "mode", "always: greylist every unknown triplet; suspicious: only senders whose suspicion score reaches --suspicion-threshold")
	fs.IntVar(&f.threshold, "suspicion-threshold", 2, "in --mode suspicious, senders scoring this or more are greylisted")
	fs.IntVar(&f.rejectThreshold, "reject-threshold", 0, "with --dnsbl-action score, reject (as the DNSBL would) a listed client whose whole suspicion score reaches this (0: never)")
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
	reloadable(fs, "mode", "suspicion-threshold", "reject-threshold", "spf-identity", "spf-timeout", "dynamic-patterns", "no-default-dynamic-patterns",
		"score-helo-domain", "score-helo-mismatch", "score-no-rdns", "score-dynamic", "score-sender-is-recipient", "score-spf-fail", "score-spf-softfail", "score-spf-pass")
}

func (f *checkFlags) check() error {
	var errs []error
	if f.spfTimeout <= 0 {
		errs = append(errs, flagErrorf("spf-timeout", "--spf-timeout: must be more than 0"))
	}
	if f.rejectThreshold < 0 {
		errs = append(errs, flagErrorf("reject-threshold", "--reject-threshold %d: want 0 or more", f.rejectThreshold))
	}
	return errors.Join(errs...)
}

func (f *checkFlags) start(context.Context, *app) error { return nil }

func (f *checkFlags) steps(p *pipeline) error {
	// Read the pattern files whatever the mode, so that a bad one is
	// reported before it matters.
	patterns, err := checks.LoadPatterns(!f.noDefault, f.patternFiles...)
	if err != nil {
		return err
	}
	mode := rules.ModeAlways
	if f.mode == "suspicious" {
		mode = rules.ModeSuspicious
	}
	p.greylisting.Mode = mode
	// SPF runs within the decision's DNS budget: a longer timeout of its
	// own would never be waited for.
	spfCheck := &checks.SPF{Resolver: p.resolver, Timeout: min(f.spfTimeout, p.dnsTimeout)}
	if f.spfIdentity {
		p.add(slotIdentity, &engine.SPFIdentity{SPF: spfCheck})
	}
	// The suspicion step is there in every mode: under --mode always it
	// scores only the clients a DNSBL in score mode lists, and the mail
	// of rules that set mode suspicious; for the rest it costs a call.
	s := f.scores
	if s.SPFFail == 0 && s.SPFSoftFail == 0 && s.SPFPass == 0 {
		spfCheck = nil // SPF counts for nothing: spare its lookups
	}
	checker := checks.NewChecker(s, patterns, p.resolver)
	p.add(slotSuspicion, &engine.Suspicion{Checker: checker, SPF: spfCheck, Threshold: f.threshold, Mode: mode, RejectThreshold: f.rejectThreshold})
	p.logs.component("checks").Info("suspicion scoring", "mode", f.mode, "threshold", f.threshold, "reject_threshold", f.rejectThreshold,
		"scores", formatScores(s), "dynamic_patterns", strings.Join(f.patternFiles, ","))
	return nil
}

func formatScores(s checks.Scores) string {
	return fmt.Sprintf("helo-domain=%d helo-mismatch=%d no-rdns=%d dynamic=%d sender-is-recipient=%d spf-fail=%d spf-softfail=%d spf-pass=%d",
		s.HeloSameDomain, s.HeloMismatch, s.NoReverse, s.Dynamic, s.SenderIsRecipient, s.SPFFail, s.SPFSoftFail, s.SPFPass)
}
