package engine

import (
	"context"
	"time"

	"github.com/greymilter/greymilter/checks"
	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/internal/lazyctx"
)

// DNSStep is a step whose work is DNS lookups (SPF, DNS lists, reverse
// names). A decision's DNS steps share one budget, Options.DNSTimeout: a
// deadline set when the first of them comes, whatever comes after. When
// the engine reaches a run of DNS steps (steps in a row, with no other
// between them), it starts the lookups of all of them at once (Prefetch),
// and each then runs in its turn; their lookups meet in the resolver
// (answers cached, identical queries merged). So a decision waits for DNS
// about one budget whatever the number of lists and checks, and what did
// not answer in time abstains. A DNS step behind a step that may settle
// without DNS (the static lists, the known triplets) starts when it is
// reached, within what is left of the budget: a client settled before it
// costs no lookups.
type DNSStep interface {
	Step
	// Prefetch starts the step's lookups in the background within ctx
	// (the decision's DNS budget) and returns at once. It may read d but
	// not write it, but through the decision's SPF evaluation (StartSPF).
	Prefetch(ctx context.Context, d *Decision)
}

// dnsBudget returns the DNS budget of a decision: DNSTimeout, but at most
// half the decision's timeout, so that the store always keeps its own time
// after DNS and DNS lateness never turns a decision into the fallback.
func dnsBudget(dnsTimeout, decisionTimeout time.Duration) time.Duration {
	if decisionTimeout > 0 && (dnsTimeout <= 0 || dnsTimeout > decisionTimeout/2) {
		return decisionTimeout / 2
	}
	return dnsTimeout
}

// dnsContext makes a decision's DNS context, bounded by the pipeline's DNS
// budget.
func dnsContext(ctx context.Context, budget time.Duration) (context.Context, context.CancelFunc) {
	if budget > 0 {
		return lazyctx.WithTimeout(ctx, budget)
	}
	return context.WithCancel(ctx)
}

// prefetchRun starts the lookups of the run of DNS steps that begins at
// steps[i], and returns the index of the first step after the run. The
// first step's own are left to its Run, which comes at once: a warm
// decision with one DNS step costs nothing more.
func prefetchRun(ctx context.Context, d *Decision, steps []Step, i int) int {
	for i++; i < len(steps); i++ {
		ds, ok := steps[i].(DNSStep)
		if !ok {
			break
		}
		ds.Prefetch(ctx, d)
	}
	return i
}

// spfEvaluation is the one SPF evaluation of a decision, which the SPF
// identity and suspicion steps share, running in the background.
type spfEvaluation struct {
	done chan struct{} // closed when res is set
	res  checks.SPFResult
}

// StartSPF starts the decision's SPF evaluation by s in the background,
// unless it started already.
func (d *Decision) StartSPF(ctx context.Context, s *checks.SPF) {
	if d.spf != nil {
		return
	}
	ev := &spfEvaluation{done: make(chan struct{})}
	d.spf = ev
	r := d.Req
	go func() {
		ev.res = s.Check(ctx, r.ClientAddr, r.Helo, r.Sender)
		close(ev.done)
	}()
}

// spfResult returns the decision's SPF result, evaluated by s now unless
// it was started before, in which case it waits for that evaluation.
func (d *Decision) spfResult(ctx context.Context, s *checks.SPF) checks.SPFResult {
	if d.spf == nil {
		return s.Check(ctx, d.Req.ClientAddr, d.Req.Helo, d.Req.Sender)
	}
	<-d.spf.done
	return d.spf.res
}

// Prefetch implements DNSStep: the reverse lookup of a claimed name starts.
func (s *ConfirmName) Prefetch(ctx context.Context, d *Decision) {
	if r := d.Req; r.ClientName == "" && r.ClaimedName != "" && r.ClientAddr.IsValid() {
		go checks.LookupReverse(ctx, s.Resolver, r.ClientAddr) //nolint:errcheck // Run reads the outcome
	}
}

// Prefetch implements DNSStep: the SPF evaluation starts.
func (s *SPFIdentity) Prefetch(ctx context.Context, d *Decision) { d.StartSPF(ctx, s.SPF) }

// Prefetch implements DNSStep: the client's reverse name is looked up,
// when the checks will want it. SPF, when only this step needs it, waits
// for its turn: it is evaluated only if it can change the outcome.
func (s *Suspicion) Prefetch(ctx context.Context, d *Decision) {
	s.Checker.Prefetch(ctx, d.Req.ClientAddr, d.Req.ClientName)
}

// Prefetch implements DNSStep: the allow lists are asked.
func (s *DNSWL) Prefetch(ctx context.Context, d *Decision) { prefetchList(ctx, s.List, d) }

// Prefetch implements DNSStep: the block lists are asked.
func (s *DNSBL) Prefetch(ctx context.Context, d *Decision) { prefetchList(ctx, s.List, d) }

func prefetchList(ctx context.Context, list *dnsbl.List, d *Decision) {
	if list != nil && d.Req.ClientAddr.IsValid() {
		list.Prefetch(ctx, d.Req.ClientAddr)
	}
}
