package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/greymilter/greymilter/internal/lazyctx"
)

// Explanation is a decision made for an administrator: every step's
// result in order, and the verdict, with nothing written anywhere.
type Explanation struct {
	Verdict Verdict
	Steps   []StepTrace
	// DryRun says that the running greymilter would let the mail pass
	// whatever Verdict says (--dry-run).
	DryRun bool
	Error  string // the internal error that made Verdict the fallback
}

// StepTrace is what one step found.
type StepTrace struct {
	Step    string
	Settled bool
	Notes   []Note // what the step noted, in order
	Error   string
}

// Note is one fact a step noted: a list rule's FILE:LINE, DNS answers,
// a check's score, the SPF result, the stored triplet...
type Note struct{ Key, Value string }

func (x *Explanation) add(step string, settled bool, err error, attrs []slog.Attr) {
	t := StepTrace{Step: step, Settled: settled}
	for _, a := range attrs {
		t.Notes = append(t.Notes, Note{a.Key, a.Value.String()})
	}
	if err != nil {
		t.Error = err.Error()
	}
	x.Steps = append(x.Steps, t)
}

// Explain runs the pipeline on req as Decide would now, step by step, but
// read-only: the greylist step says what an attempt would come to without
// recording it, known triplets are not touched, and the decision is neither
// counted nor logged. DNS lookups are made (and cached) as for a decision.
func (e *Engine) Explain(ctx context.Context, req *Request) (x Explanation) {
	p := e.pipeline.Load()
	x.DryRun = p.DryRun
	d := &Decision{Req: req, Now: e.clock.Now(), ReadOnly: true, trace: &x}
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("engine panic while explaining", "panic", r, "stack", string(debug.Stack()))
			x.Verdict, x.Error = p.fallbackVerdict(), fmt.Sprintf("panic: %v", r)
		}
	}()
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = lazyctx.WithTimeout(ctx, p.Timeout)
		defer cancel()
	}
	v, err := e.run(ctx, p, d)
	if err != nil {
		x.Verdict, x.Error = p.fallbackVerdict(), err.Error()
		return x
	}
	x.Verdict = v
	return x
}
