package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// stepFunc makes a Step of a function, for tests of the pipeline itself.
type stepFunc struct {
	name string
	run  func(context.Context, *Decision) (bool, error)
}

func (s stepFunc) Name() string                                       { return s.name }
func (s stepFunc) Run(ctx context.Context, d *Decision) (bool, error) { return s.run(ctx, d) }

func deferStep(ctx context.Context, d *Decision) (bool, error) {
	d.Verdict = Verdict{Action: Defer, Code: 451, ECode: "4.7.1", Text: "wait", Reason: "new"}
	return true, nil
}

func newTestEngine(buf *bytes.Buffer, opts Options, steps ...Step) *Engine {
	opts.Logger = slog.New(slog.NewTextHandler(buf, nil))
	return New(opts, steps...)
}

var req = &Request{ClientAddr: netip.MustParseAddr("192.0.2.1"), ClientName: "mail.example.org", Helo: "mail.example.org", Sender: "a@example.org", Recipient: "b@example.net"}

func TestFirstSettlingStepWins(t *testing.T) {
	var buf bytes.Buffer
	ran := []string{}
	mark := func(name string, settle bool) Step {
		return stepFunc{name, func(_ context.Context, d *Decision) (bool, error) {
			ran = append(ran, name)
			d.Headers = append(d.Headers, Header{"X-Seen", name})
			if settle {
				return deferStep(context.Background(), d)
			}
			return false, nil
		}}
	}
	e := newTestEngine(&buf, Options{}, mark("one", false), mark("two", true), mark("three", true))
	v := e.Decide(context.Background(), req)
	if v.Action != Defer || v.Step != "two" || strings.Join(ran, ",") != "one,two" {
		t.Fatalf("verdict %+v after steps %v", v, ran)
	}
	if len(v.Headers) != 2 {
		t.Errorf("headers %v, want those added by both steps", v.Headers)
	}
	line := buf.String()
	for _, want := range []string{"msg=decision", "action=greylist", "reason=new", "step=two", "client=192.0.2.1", "sender=<a@example.org>", "recipient=<b@example.net>"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %q", line, want)
		}
	}
}

func TestInternalErrorsBecomeTheFallback(t *testing.T) {
	failing := stepFunc{"broken", func(context.Context, *Decision) (bool, error) { return false, errors.New("disk on fire") }}
	panicking := stepFunc{"panics", func(context.Context, *Decision) (bool, error) { panic("oops") }}
	tests := []struct {
		name    string
		step    Step
		onError OnError
		want    Action
	}{
		{"error, tempfail", failing, OnErrorTempfail, Defer},
		{"error, accept", failing, OnErrorAccept, Pass},
		{"panic, tempfail", panicking, OnErrorTempfail, Defer},
		{"panic, accept", panicking, OnErrorAccept, Pass},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		e := newTestEngine(&buf, Options{OnError: tt.onError}, tt.step)
		v := e.Decide(context.Background(), req)
		if v.Action != tt.want || v.Reason != "internal-error" {
			t.Errorf("%s: verdict %+v, want %v internal-error", tt.name, v, tt.want)
		}
		if tt.want == Defer && v.Reply() != "451 4.3.0 Temporary local problem, please try again later" {
			t.Errorf("%s: reply %q", tt.name, v.Reply())
		}
		if !strings.Contains(buf.String(), "level=ERROR") {
			t.Errorf("%s: not logged as an error: %q", tt.name, buf.String())
		}
	}
}

func TestDryRunPassesButLogsTheVerdict(t *testing.T) {
	var buf bytes.Buffer
	var observed []Verdict
	e := newTestEngine(&buf, Options{DryRun: true, Observe: func(_ time.Time, v Verdict) { observed = append(observed, v) }}, stepFunc{"greylist", deferStep})
	v := e.Decide(context.Background(), req)
	if v.Action != Pass || !v.DryRun || v.Reason != "new" {
		t.Fatalf("dry run verdict %+v", v)
	}
	if len(observed) != 1 || observed[0].Action != Defer {
		t.Errorf("observed %+v, want the real (deferring) verdict", observed)
	}
	if n := testutil.ToFloat64(e.Metrics().decisions.WithLabelValues("greylist", "new")); n != 1 {
		t.Errorf("greylist/new counted %v times, want the real verdict counted once", n)
	}
	if !strings.Contains(buf.String(), "action=greylist") || !strings.Contains(buf.String(), "dry_run=true") {
		t.Errorf("log %q should show the would-be deferral", buf.String())
	}
}

func TestDecisionTimeoutReachesSteps(t *testing.T) {
	var buf bytes.Buffer
	slow := stepFunc{"slow", func(ctx context.Context, d *Decision) (bool, error) {
		select {
		case <-ctx.Done():
			d.Note("abstained", "deadline")
			return false, nil
		case <-time.After(10 * time.Second):
			return deferStep(ctx, d)
		}
	}}
	e := newTestEngine(&buf, Options{Timeout: 20 * time.Millisecond}, slow)
	if v := e.Decide(context.Background(), req); v.Action != Pass || v.Reason != "no-step-decided" {
		t.Fatalf("verdict %+v, want pass after the slow step abstained", v)
	}
}

func TestBypass(t *testing.T) {
	b := &Bypass{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:f::/48")}}
	tests := []struct {
		name   string
		req    Request
		settle bool
		reason string
	}{
		{"authenticated", Request{ClientAddr: netip.MustParseAddr("192.0.2.1"), AuthUser: "alice"}, true, "authenticated"},
		{"trusted v4", Request{ClientAddr: netip.MustParseAddr("10.1.2.3")}, true, "trusted"},
		{"trusted v6", Request{ClientAddr: netip.MustParseAddr("2001:db8:f:1::5")}, true, "trusted"},
		{"local submission", Request{}, true, "local"},
		{"stranger", Request{ClientAddr: netip.MustParseAddr("192.0.2.1")}, false, ""},
	}
	for _, tt := range tests {
		d := &Decision{Req: &tt.req}
		settled, err := b.Run(context.Background(), d)
		if err != nil || settled != tt.settle || d.Verdict.Reason != tt.reason {
			t.Errorf("%s: settled=%v reason=%q err=%v", tt.name, settled, d.Verdict.Reason, err)
		}
	}
}

func TestExpandTemplate(t *testing.T) {
	tests := []struct{ tmpl, want string }{
		{"{CLIENT} {SENDER} -> {RECIPIENT}: wait {SECONDS}s ({DNSBL})", "192.0.2.1 a@example.org -> b@example.net: wait 273s (bl.example)"},
		{"Address {ADDR} found in {DNSBL}", "Address 192.0.2.1 found in bl.example"},
		{"no placeholders", "no placeholders"},
		{"{UNKNOWN} stays, {SECONDS}", "{UNKNOWN} stays, 273"},
		{"unclosed {SECONDS", "unclosed {SECONDS"},
		{"{{SECONDS}}", "{273}"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := ExpandTemplate(tt.tmpl, req, 272*time.Second+300*time.Millisecond, "DNSBL", "bl.example"); got != tt.want {
			t.Errorf("ExpandTemplate(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestMetricsCountDecisions(t *testing.T) {
	var buf bytes.Buffer
	e := newTestEngine(&buf, Options{}, stepFunc{"greylist", deferStep})
	for range 3 {
		e.Decide(context.Background(), req)
	}
	out, err := testutil.CollectAndFormat(e.Metrics(), expfmt.TypeTextPlain, "greymilter_decisions_total", "greymilter_decision_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE greymilter_decisions_total counter\n",
		`greymilter_decisions_total{action="greylist",reason="new"} 3` + "\n",
		"# TYPE greymilter_decision_seconds histogram\n",
		`greymilter_decision_seconds_bucket{le="0.0001"} `,
		`greymilter_decision_seconds_bucket{le="+Inf"} 3` + "\n",
		"greymilter_decision_seconds_count 3\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("exposition lacks %q:\n%s", want, out)
		}
	}
}

func TestSetPipelineChangesLaterDecisions(t *testing.T) {
	var buf bytes.Buffer
	e := newTestEngine(&buf, Options{}, stepFunc{"greylist", deferStep})
	if v := e.Decide(context.Background(), req); v.Action != Defer {
		t.Fatalf("before the swap: %+v", v)
	}
	e.SetPipeline(&Pipeline{Steps: []Step{stepFunc{"greylist", deferStep}}, DryRun: true})
	if v := e.Decide(context.Background(), req); v.Action != Pass || !v.DryRun {
		t.Errorf("after swapping in a dry-run pipeline: %+v, want a dry-run pass", v)
	}
}

func TestDebugLogsEachStep(t *testing.T) {
	var buf bytes.Buffer
	e := New(Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		stepFunc{"lists", func(context.Context, *Decision) (bool, error) { return false, nil }}, stepFunc{"greylist", deferStep})
	e.Decide(context.Background(), req)
	for _, want := range []string{"msg=step step=lists", "settled=false", "msg=step step=greylist", "settled=true score=0 action=greylist reason=new"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("debug log lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	e = newTestEngine(&buf, Options{}, stepFunc{"greylist", deferStep})
	e.Decide(context.Background(), req)
	if strings.Contains(buf.String(), "msg=step") {
		t.Errorf("step lines at info level:\n%s", buf.String())
	}
}
