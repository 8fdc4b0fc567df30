package engine

import (
	"context"

	"blitiri.com.ar/go/spf"

	"github.com/greymilter/greymilter/checks"
	"github.com/greymilter/greymilter/rules"
)

// SPFIdentity evaluates the sender's SPF policy (once per decision: the
// result stays in d.SPF for the suspicion step) and, when it passes, names
// the triplet's client by the domain, "spf:example.com", instead of its
// subnet: a provider that retries from another address of its pool is the
// same client. It never settles the verdict. It runs before the known step,
// whose lookup uses that name.
type SPFIdentity struct {
	SPF *checks.SPF
}

// Name implements Step.
func (*SPFIdentity) Name() string { return "spf" }

// Run implements Step.
func (s *SPFIdentity) Run(ctx context.Context, d *Decision) (bool, error) {
	if res := evaluateSPF(ctx, s.SPF, d); res.Effective() == spf.Pass {
		d.Identity = "spf:" + res.Domain
	}
	return false, nil
}

// evaluateSPF runs SPF for d's sender, keeps the result in d.SPF and notes
// it for the log.
func evaluateSPF(ctx context.Context, s *checks.SPF, d *Decision) checks.SPFResult {
	res := d.spfResult(ctx, s)
	d.SPF = string(res.Effective())
	d.Note("spf", string(res.Result))
	if res.Domain != "" {
		d.Note("spf_domain", res.Domain)
	}
	if res.Permissive {
		d.Note("spf_permissive", true)
	}
	if res.Err != nil {
		d.Note("spf_error", res.Err.Error())
	}
	return res
}

// Suspicion is the step of mode "suspicious" (bley's idea): it scores the
// sender with the heuristics of package checks and lets one that stays
// below Threshold, and that no DNSBL step marked for greylisting, pass at
// once (reason "not-suspicious"). Others fall through to the greylist step.
// Every check's contribution goes on the decision's log line
// (check_helo=+2:mismatch ... score=3), so that operators can tune the
// scores, with --dry-run first.
//
// The step also serves the other modes: under mode always or never (by
// --mode or a rule) it only scores a client that a DNSBL in score mode
// listed, and rejects it when the whole score reaches RejectThreshold.
type Suspicion struct {
	Checker   *checks.Checker
	SPF       *checks.SPF // nil: SPF does not count
	Threshold int
	// Mode is --mode; ModeUnset is ModeSuspicious. A rule's mode wins.
	Mode rules.Mode
	// RejectThreshold, when above 0, rejects a client a DNSBL in score
	// mode listed once the whole score reaches it (--reject-threshold).
	RejectThreshold int
}

// Name implements Step.
func (*Suspicion) Name() string { return "suspicion" }

// Run implements Step.
func (s *Suspicion) Run(ctx context.Context, d *Decision) (bool, error) {
	mode := d.mode(or(s.Mode, rules.ModeSuspicious))
	if mode != rules.ModeSuspicious && d.listed == nil {
		return false, nil // nothing to score: the greylist step decides
	}
	if d.ForceGreylist {
		d.Note("suspicion", "dnsbl")
		return false, nil
	}
	r := d.Req
	results := s.Checker.Run(ctx, checks.Input{Addr: r.ClientAddr, Name: r.ClientName, Helo: r.Helo, Sender: r.Sender, Recipient: r.Recipient})
	scores := s.Checker.Scores()
	sum := d.Score + checks.Sum(results)
	spfResult := checks.SPFScore(d.SPF, scores)
	if d.SPF == "" && s.SPF != nil {
		matters := mode == rules.ModeSuspicious && spfMatters(sum, scores, s.Threshold) ||
			d.listed != nil && s.RejectThreshold > 0 && spfMatters(sum, scores, s.RejectThreshold)
		if matters {
			spfResult = checks.SPFScore(string(evaluateSPF(ctx, s.SPF, d).Effective()), scores)
		} else {
			spfResult.Reason = "skipped"
		}
	}
	results = append(results, spfResult)
	d.Score += checks.Sum(results)
	for _, res := range results {
		d.Note("check_"+res.Check, res.String())
	}
	d.Note("score", d.Score)
	if d.listed != nil && s.RejectThreshold > 0 && d.Score >= s.RejectThreshold {
		d.Note("reject_threshold", s.RejectThreshold)
		d.Verdict = d.listed.rejection(ctx, d)
		return true, nil
	}
	if mode != rules.ModeSuspicious || d.Score >= s.Threshold {
		return false, nil
	}
	d.Verdict = Verdict{Action: Pass, Reason: "not-suspicious"}
	return true, nil
}

// spfMatters reports whether some SPF result could put a sender scoring
// sum on the other side of threshold; when none can, the lookups are not
// worth their time.
func spfMatters(sum int, scores checks.Scores, threshold int) bool {
	lo, hi := 0, 0
	for _, v := range []int{scores.SPFPass, scores.SPFFail, scores.SPFSoftFail} {
		lo, hi = min(lo, v), max(hi, v)
	}
	return sum+lo < threshold && sum+hi >= threshold
}
