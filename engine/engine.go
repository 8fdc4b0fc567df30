// Package engine holds greymilter's decision pipeline: the one place where a
// recipient of an SMTP transaction is judged, whichever front end (milter or
// policy server) asked.
//
// A decision runs an ordered list of named steps (bypass, client name,
// lists, DNSWL, DNSBL, SPF identity, known, suspicion, greylist; the order
// is the caller's). Each step may settle the verdict or
// leave it to the next one; the first step that settles wins. Front ends only
// translate their wire format into a Request and a Verdict back into a reply.
package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/greymilter/greymilter/internal/lazyctx"
	"github.com/greymilter/greymilter/rules"
)

// Request is what the MTA tells us about one recipient of one transaction.
type Request struct {
	ClientAddr netip.Addr // the SMTP client's address (unmapped)
	ClientName string     // verified reverse name; "" when the MTA had none ("unknown")
	// ClaimedName is a client name the MTA gave without vouching for it
	// (Sendmail's {client_resolve} not OK): the ConfirmName step checks it
	// and, if greymilter's own lookups confirm a name, fills ClientName.
	ClaimedName string
	Helo        string // HELO/EHLO argument as given
	Sender      string // envelope sender without brackets; "" is the null sender
	Recipient   string // envelope recipient without brackets
	AuthUser    string // SASL login name; "" when not authenticated
	QueueID     string // MTA queue id, for the log only
	TLS         TLSClient
}

// Action is what the MTA is told to do with a recipient.
type Action int

const (
	// Pass lets the recipient through (milter: continue; policy: DUNNO or PREPEND).
	Pass Action = iota
	// Defer answers a temporary error (4xx).
	Defer
	// Reject answers a permanent error (5xx).
	Reject
)

func (a Action) String() string {
	switch a {
	case Pass:
		return "pass"
	case Defer:
		return "greylist"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Header is a header field to add to a message that passes.
type Header struct {
	Name, Value string
}

// Verdict is the engine's answer for one recipient.
type Verdict struct {
	Action  Action
	Code    int    // SMTP reply code, e.g. 451; 0 for Pass
	ECode   string // enhanced status code, e.g. "4.7.1"
	Text    string // reply text without code
	Wait    time.Duration
	Headers []Header // added to the message if it is accepted
	Step    string   // the step that settled the verdict
	Reason  string   // why, in one word: new, early-retry, passed, known, ...
	DryRun  bool     // the verdict was computed but the MTA is told Pass
}

// Reply formats the verdict as an SMTP reply line ("451 4.7.1 text").
func (v Verdict) Reply() string {
	return fmt.Sprintf("%d %s %s", v.Code, v.ECode, v.Text)
}

// Decision is the state shared by the steps of one decision. Steps read the
// request, may add headers, scores and facts for later steps, and settle the
// verdict by returning true from Run.
type Decision struct {
	Req *Request
	Now time.Time

	// Verdict is the result once a step settled it.
	Verdict Verdict
	// Headers accumulates headers that go on the message whatever step
	// settles (e.g. X-RBL-Warning in mark mode).
	Headers []Header
	// Score is the suspicion score gathered by the heuristic checks.
	Score int
	// ForceGreylist is set by a step (e.g. DNSBL in greylist mode) that
	// wants the greylist step to run whatever the suspicion steps say.
	ForceGreylist bool
	// Identity, when set, replaces the client subnet in the triplet (e.g.
	// "spf:example.com" when SPF passed for the sender's domain).
	Identity string
	// SPF is the sender's SPF result ("pass", "fail", ...; "" until a
	// step evaluated it), so that it is evaluated once per decision.
	SPF string
	// ReadOnly is set when the decision is only explained (Engine.Explain):
	// steps then write nothing, not even a last-seen time.
	ReadOnly bool
	// Rule is the rules-file line that matched (nil: none); its settings
	// replace the flags' for this decision.
	Rule *rules.Rule
	// listed, set by the DNSBL step in score mode, is the listing the
	// suspicion step rejects when the whole score reaches its reject
	// threshold.
	listed *listing
	// attrs are key=value pairs for the decision's log line.
	attrs []slog.Attr
	// spf is the decision's SPF evaluation, once started.
	spf *spfEvaluation
	// trace, when explaining, records each step's result.
	trace *Explanation
}

// Note adds a key=value pair to the decision's log line.
func (d *Decision) Note(key string, value any) {
	d.attrs = append(d.attrs, slog.Any(key, value))
}

// Step is one named stage of the pipeline.
type Step interface {
	// Name identifies the step in logs and verdicts.
	Name() string
	// Run examines the decision. It returns true when it settled
	// d.Verdict, which ends the pipeline.
	Run(ctx context.Context, d *Decision) (settled bool, err error)
}

// Clock tells the time; tests give a fake one.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// OnError says what the MTA is told when the engine fails internally.
type OnError int

const (
	// OnErrorTempfail answers 451 4.3.0 so the sender retries later.
	OnErrorTempfail OnError = iota
	// OnErrorAccept lets the recipient through unchecked.
	OnErrorAccept
)

// Engine runs the pipeline.
type Engine struct {
	// pipeline is read once per decision; a reload swaps it whole, so a
	// decision runs entirely with the old configuration or the new one.
	pipeline atomic.Pointer[Pipeline]
	clock    Clock
	log      *slog.Logger
	metrics  *Metrics
	observe  func(time.Time, Verdict)
}

// Pipeline is what a configuration reload may change: the steps and how
// decisions end. It must not change once given to the engine.
type Pipeline struct {
	Steps   []Step
	OnError OnError
	// DryRun makes every decision and logs it, but tells the MTA Pass.
	DryRun bool
	// Timeout bounds a whole decision; steps abstain when it runs out.
	Timeout time.Duration
	// DNSTimeout bounds the DNS lookups of a decision (Options.DNSTimeout).
	DNSTimeout time.Duration

	dnsBudget time.Duration // of DNSTimeout and Timeout
}

// Options configures an Engine.
type Options struct {
	Clock   Clock        // default SystemClock
	Logger  *slog.Logger // default slog.Default()
	OnError OnError
	// DryRun makes every decision and logs it, but tells the MTA Pass.
	DryRun bool
	// Timeout bounds a whole decision; steps abstain when it runs out.
	Timeout time.Duration
	// DNSTimeout bounds the DNS lookups of a decision, all its DNS steps
	// together (see DNSStep); at most half of Timeout, which it is when 0.
	// What did not answer in time abstains.
	DNSTimeout time.Duration
	// Observe, if set, is told every verdict (before dry-run turns it into
	// a pass), e.g. to keep the decision log.
	Observe func(at time.Time, v Verdict)
}

// New builds an engine that runs steps in the order given.
func New(opts Options, steps ...Step) *Engine {
	e := &Engine{clock: opts.Clock, log: opts.Logger, metrics: newMetrics(), observe: opts.Observe}
	e.SetPipeline(&Pipeline{Steps: steps, OnError: opts.OnError, DryRun: opts.DryRun, Timeout: opts.Timeout, DNSTimeout: opts.DNSTimeout})
	if e.clock == nil {
		e.clock = SystemClock{}
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	return e
}

// SetPipeline makes the decisions that start from now on run p (a
// configuration reload); decisions in flight finish with the one they began
// with.
func (e *Engine) SetPipeline(p *Pipeline) {
	q := *p
	q.dnsBudget = dnsBudget(p.DNSTimeout, p.Timeout)
	e.pipeline.Store(&q)
}

// Metrics returns the engine's counters.
func (e *Engine) Metrics() *Metrics { return e.metrics }

// Decide judges one recipient. It never fails: an internal error or panic
// becomes the configured fallback verdict, and is logged.
func (e *Engine) Decide(ctx context.Context, req *Request) Verdict {
	start := time.Now()
	p := e.pipeline.Load()
	d := &Decision{Req: req, Now: e.clock.Now()}
	v := e.decide(ctx, p, d)
	e.metrics.count(v, time.Since(start))
	if e.observe != nil {
		e.observe(d.Now, v)
	}
	if p.DryRun && v.Action != Pass {
		v = Verdict{Action: Pass, Step: v.Step, Reason: v.Reason, DryRun: true, Headers: d.Headers}
	}
	return v
}

func (e *Engine) decide(ctx context.Context, p *Pipeline, d *Decision) (v Verdict) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("engine panic", "panic", r, "stack", string(debug.Stack()))
			v = e.fallback(p, d, fmt.Errorf("panic: %v", r))
		}
	}()
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = lazyctx.WithTimeout(ctx, p.Timeout)
		defer cancel()
	}
	v, err := e.run(ctx, p, d)
	if err != nil {
		return e.fallback(p, d, err)
	}
	e.logDecision(slog.LevelInfo, p, d, v)
	return v
}

func (e *Engine) run(ctx context.Context, p *Pipeline, d *Decision) (Verdict, error) {
	debug := e.log.Enabled(ctx, slog.LevelDebug)
	// The DNS steps run with the decision's DNS context, made when the
	// first of them comes; the others (the store's) with the decision's
	// own, which DNS leaves time in. Reaching a run of DNS steps starts
	// the lookups of all of them.
	var dnsCtx context.Context
	prefetched := 0 // steps before this index had their lookups started
	for i, s := range p.Steps {
		sctx := ctx
		if _, ok := s.(DNSStep); ok {
			if dnsCtx == nil {
				var cancel context.CancelFunc
				dnsCtx, cancel = dnsContext(ctx, p.dnsBudget)
				defer cancel()
			}
			if i >= prefetched {
				prefetched = prefetchRun(dnsCtx, d, p.Steps, i)
			}
			sctx = dnsCtx
		}
		mark := len(d.attrs)
		settled, err := s.Run(sctx, d)
		if debug {
			e.logStep(ctx, s, d, settled, err)
		}
		if d.trace != nil {
			d.trace.add(s.Name(), settled, err, d.attrs[mark:])
		}
		if err != nil {
			return Verdict{}, fmt.Errorf("%s: %w", s.Name(), err)
		}
		if settled {
			v := d.Verdict
			if v.Step == "" {
				v.Step = s.Name()
			}
			v.Headers = append(append([]Header(nil), d.Headers...), v.Headers...)
			return v, nil
		}
	}
	return Verdict{Action: Pass, Step: "end", Reason: "no-step-decided", Headers: d.Headers}, nil
}

// logStep writes one step's result at debug level (-vv): what an
// administrator reads to learn why a decision went the way it did.
func (e *Engine) logStep(ctx context.Context, s Step, d *Decision, settled bool, err error) {
	attrs := []slog.Attr{
		slog.String("step", s.Name()),
		slog.String("client", d.Req.ClientAddr.String()),
		slog.String("recipient", "<"+d.Req.Recipient+">"),
		slog.Bool("settled", settled),
		slog.Int("score", d.Score),
	}
	if settled {
		attrs = append(attrs, slog.String("action", d.Verdict.Action.String()), slog.String("reason", d.Verdict.Reason))
	}
	if d.Identity != "" {
		attrs = append(attrs, slog.String("identity", d.Identity))
	}
	if d.SPF != "" {
		attrs = append(attrs, slog.String("spf", d.SPF))
	}
	if err != nil {
		attrs = append(attrs, slog.Any("err", err))
	}
	e.log.LogAttrs(ctx, slog.LevelDebug, "step", attrs...)
}

func (e *Engine) fallback(p *Pipeline, d *Decision, err error) Verdict {
	v := p.fallbackVerdict()
	d.Note("error", err.Error())
	e.logDecision(slog.LevelError, p, d, v)
	return v
}

func (e *Engine) logDecision(level slog.Level, p *Pipeline, d *Decision, v Verdict) {
	if !e.log.Enabled(context.Background(), level) {
		return
	}
	r := d.Req
	buf := attrPool.Get().(*[]slog.Attr)
	defer func() {
		clear(*buf) // drop the references the values hold
		attrPool.Put(buf)
	}()
	attrs := append((*buf)[:0],
		slog.String("action", v.Action.String()),
		slog.String("reason", v.Reason),
		slog.String("step", v.Step),
		slog.String("client", r.ClientAddr.String()),
		slog.String("client_name", nameOrUnknown(r.ClientName)),
		slog.String("helo", r.Helo),
		slog.String("sender", "<"+r.Sender+">"),
		slog.String("recipient", "<"+r.Recipient+">"),
	)
	if v.Wait > 0 {
		attrs = append(attrs, slog.Int("wait", int(v.Wait.Round(time.Second)/time.Second)))
	}
	if r.QueueID != "" {
		attrs = append(attrs, slog.String("queue_id", r.QueueID))
	}
	if p.DryRun && v.Action != Pass {
		attrs = append(attrs, slog.Bool("dry_run", true))
	}
	attrs = append(attrs, d.attrs...)
	e.log.LogAttrs(context.Background(), level, "decision", attrs...)
	*buf = attrs
}

// attrPool holds the attribute slices of decision log lines: a line is
// built for every decision and handlers copy what they keep.
var attrPool = sync.Pool{New: func() any { s := make([]slog.Attr, 0, 16); return &s }}

func nameOrUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// fallbackVerdict is the answer to an internal error, per OnError.
func (p *Pipeline) fallbackVerdict() Verdict {
	v := Verdict{Step: "error", Reason: "internal-error"}
	if p.OnError == OnErrorTempfail {
		v.Action, v.Code, v.ECode, v.Text = Defer, 451, "4.3.0", "Temporary local problem, please try again later"
	}
	return v
}

// ExpandTemplate replaces {SECONDS}, {CLIENT}, {SENDER}, {RECIPIENT} and any
// extra {KEY} given in vars in a reply template.
func ExpandTemplate(tmpl string, r *Request, wait time.Duration, vars ...string) string {
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	// A plain scan: this runs for every deferral, and a strings.Replacer
	// built per call costs more than the whole expansion.
	var b strings.Builder
	b.Grow(len(tmpl) + 32)
	for {
		open := strings.IndexByte(tmpl, '{')
		if open < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		end := strings.IndexByte(tmpl[open:], '}')
		if end < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		b.WriteString(tmpl[:open])
		v, ok := templateValue(tmpl[open+1:open+end], r, wait, vars)
		if !ok {
			// Not a placeholder: keep the brace, look again after it.
			b.WriteByte('{')
			tmpl = tmpl[open+1:]
			continue
		}
		b.WriteString(v)
		tmpl = tmpl[open+end+1:]
	}
}

func templateValue(name string, r *Request, wait time.Duration, vars []string) (string, bool) {
	switch name {
	case "SECONDS":
		return strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10), true
	case "CLIENT", "ADDR":
		return r.ClientAddr.String(), true
	case "SENDER":
		return r.Sender, true
	case "RECIPIENT":
		return r.Recipient, true
	}
	for i := 0; i+1 < len(vars); i += 2 {
		if vars[i] == name {
			return vars[i+1], true
		}
	}
	return "", false
}
