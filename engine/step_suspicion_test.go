package engine

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/checks"
	"github.com/greymilter/greymilter/dnsbl"
	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/internal/clocktest"
	"github.com/greymilter/greymilter/resolver"
	"github.com/greymilter/greymilter/rules"
)

// suspicionSetup is a pipeline as greymilter builds it: SPF identity,
// known, DNSBL, suspicion, greylist, each present when asked for.
type suspicionSetup struct {
	suspicious    bool // mode suspicious; else mode always
	threshold     int
	identity      bool
	dnsbl         bool // bl1.test with --dnsbl-action greylist
	autoWhitelist int
	cacheSize     int // of the resolver; -1: none, to count queries

	dnsblAction     DNSBLAction // with dnsbl; 0 (reject) is read as greylist
	scoreDNSBL      int         // with dnsblAction DNSBLScore
	rejectThreshold int
	rules           string // a rules file's text: adds the rules step
	autoPenalty     bool   // --penalty not given
	penalty         time.Duration
}

type suspicionEnv struct {
	e     *Engine
	steps []Step       // the pipeline's
	g     *Greylisting // of its known and greylist steps
	clock *clocktest.Clock
	log   *bytes.Buffer
	dns   *dnstest.Server
}

func newSuspicionEnv(t *testing.T, s suspicionSetup) *suspicionEnv {
	t.Helper()
	srv := dnstest.Start(t, "testdata/suspicion.zone", "testdata/dnsbl.zone")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, CacheSize: s.cacheSize})
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlitestore.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	mode := rules.ModeAlways
	if s.suspicious {
		mode = rules.ModeSuspicious
	}
	timing := greylist.DefaultRules
	timing.Penalty = s.penalty
	g := &Greylisting{
		Greylist:    &greylist.Greylist{Store: store, Rules: timing, AutoWhitelist: s.autoWhitelist},
		Keyer:       greylist.DefaultKeyer,
		Hostname:    "mx.test",
		Mode:        mode,
		AutoPenalty: s.autoPenalty,
	}
	spfCheck := &checks.SPF{Resolver: res, Timeout: time.Second}
	var steps []Step
	if s.rules != "" {
		path := filepath.Join(t.TempDir(), "rules")
		if err := os.WriteFile(path, []byte(s.rules), 0o644); err != nil {
			t.Fatal(err)
		}
		set, err := rules.Load(path, rules.Options{Resolver: res})
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, &Rules{Set: set})
	}
	if s.identity {
		steps = append(steps, &SPFIdentity{SPF: spfCheck})
	}
	steps = append(steps, g.KnownStep())
	if s.dnsbl {
		zone, err := dnsbl.ParseZone("bl1.test")
		if err != nil {
			t.Fatal(err)
		}
		action := s.dnsblAction
		if action == DNSBLReject {
			action = DNSBLGreylist
		}
		steps = append(steps, &DNSBL{List: dnsbl.NewList(res, dnsbl.Any, nil, zone), Action: action, Score: s.scoreDNSBL})
	}
	if s.suspicious || s.rules != "" || s.dnsblAction == DNSBLScore {
		steps = append(steps, &Suspicion{Checker: checks.NewChecker(checks.DefaultScores, nil, res), SPF: spfCheck, Threshold: s.threshold,
			Mode: mode, RejectThreshold: s.rejectThreshold})
	}
	steps = append(steps, g.GreylistStep())
	env := &suspicionEnv{clock: clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)), log: &bytes.Buffer{}, dns: srv, steps: steps, g: g}
	env.e = newTestEngine(env.log, Options{Clock: env.clock}, steps...)
	return env
}

// decide runs one decision and returns its verdict and log line.
func (env *suspicionEnv) decide(t *testing.T, r *Request) (Verdict, string) {
	t.Helper()
	env.log.Reset()
	v := env.e.Decide(context.Background(), r)
	return v, strings.TrimSpace(env.log.String())
}

func client(addr, name, helo, sender string) *Request {
	return &Request{ClientAddr: netip.MustParseAddr(addr), ClientName: name, Helo: helo, Sender: sender, Recipient: "b@example.net"}
}

// The senders of the suspicion tests, with what the checks make of them
// under the default scores.
var (
	// Score -1: the name is the HELO, SPF passes.
	cleanPass = client("192.0.2.10", "mail.pool.test", "mail.pool.test", "a@pool.test")
	// Score 0: no SPF policy.
	cleanNone = client("192.0.2.10", "mx.plain.test", "mx.plain.test", "a@plain.test")
	// Score 1: HELO in the same domain.
	sameDomain = client("192.0.2.10", "out.plain.test", "mx.plain.test", "a@plain.test")
	// Score 2: ... and the sender is the recipient.
	sameDomainSelf = client("192.0.2.10", "out.plain.test", "mx.plain.test", "b@example.net")
	// Score 4: a DSL line that greets with a made-up name; SPF cannot
	// change the outcome and is skipped.
	dynamic = client("203.0.113.9", "dsl-203-0-113-9.dyn.example.test", "pc-home", "a@pool.test")
	// Score 2: a clean host that pool.test does not authorise.
	spfFail = client("203.0.113.9", "mx.example.test", "mx.example.test", "a@pool.test")
	// Score 1: softfail.
	spfSoftFail = client("203.0.113.9", "mx.example.test", "mx.example.test", "a@soft.test")
	// Score 1: no name, its address literal as HELO, SPF pass.
	unnamedPass = client("198.51.100.20", "", "[198.51.100.20]", "a@pool.test")
	// Score 2: the same with no SPF policy.
	unnamedNone = client("203.0.113.9", "", "[203.0.113.9]", "a@plain.test")
	// Score 2: +all passes anyone and lowers nothing.
	unnamedOpen = client("203.0.113.9", "", "[203.0.113.9]", "a@open.test")
	// Score 0, but bl1.test lists 192.0.2.1.
	listed = client("192.0.2.1", "mail.pool.test", "mail.pool.test", "a@pool.test")
)

func TestSuspiciousMode(t *testing.T) {
	tests := []struct {
		desc      string
		threshold int
		r         *Request
		want      string   // action and reason
		log       []string // in the log line
	}{
		{"clean, SPF pass", 2, cleanPass, "pass not-suspicious",
			[]string{"step=suspicion", "check_rdns=0:verified", "check_helo=0:equal", "check_dynamic=0:static:mail", "check_sender=0:differs", "check_spf=-1:pass", "score=-1", "spf=pass", "spf_domain=pool.test"}},
		{"clean, no SPF policy", 2, cleanNone, "pass not-suspicious",
			[]string{"check_spf=0:none", "score=0"}},
		{"HELO in the same domain", 2, sameDomain, "pass not-suspicious",
			[]string{"check_helo=+1:same-domain", "score=1"}},
		{"same domain, sender is recipient", 2, sameDomainSelf, "greylist new",
			[]string{"step=greylist", "check_helo=+1:same-domain", "check_sender=+1:is-recipient", "score=2"}},
		{"dynamic name and made-up HELO", 2, dynamic, "greylist new",
			[]string{"check_dynamic=+2:address:octets", "check_helo=+2:mismatch", "check_spf=0:skipped", "score=4"}},
		{"SPF fail", 2, spfFail, "greylist new",
			[]string{"check_spf=+2:fail", "score=2", "spf=fail"}},
		{"SPF softfail", 2, spfSoftFail, "pass not-suspicious",
			[]string{"check_spf=+1:softfail", "score=1"}},
		{"no name, literal HELO, SPF pass", 2, unnamedPass, "pass not-suspicious",
			[]string{"check_rdns=+1:no-ptr", "check_helo=+1:literal", "check_spf=-1:pass", "score=1"}},
		{"no name, literal HELO, no SPF", 2, unnamedNone, "greylist new",
			[]string{"check_rdns=+1:no-ptr", "check_spf=0:none", "score=2"}},
		{"+all lowers nothing", 2, unnamedOpen, "greylist new",
			[]string{"check_spf=0:neutral", "spf=pass", "spf_permissive=true", "score=2"}},
		// Thresholds.
		{"threshold 1: HELO in the same domain waits", 1, sameDomain, "greylist new", []string{"score=1"}},
		{"threshold 1: clean passes", 1, cleanNone, "pass not-suspicious", []string{"score=0"}},
		{"threshold 5: score 4 passes", 5, client("203.0.113.9", "dsl-203-0-113-9.dyn.example.test", "pc-home", "a@plain.test"),
			"pass not-suspicious", []string{"check_spf=0:none", "score=4"}},
		{"threshold 5: score 4 and SPF fail", 5, dynamic, "greylist new", []string{"check_spf=+2:fail", "score=6"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			env := newSuspicionEnv(t, suspicionSetup{suspicious: true, threshold: tt.threshold})
			v, line := env.decide(t, tt.r)
			if got := v.Action.String() + " " + v.Reason; got != tt.want {
				t.Errorf("verdict %q, want %q\n%s", got, tt.want, line)
			}
			for _, s := range tt.log {
				if !strings.Contains(line, " "+s) {
					t.Errorf("log line lacks %q:\n%s", s, line)
				}
			}
		})
	}
}

func TestSuspiciousModeDNSBL(t *testing.T) {
	env := newSuspicionEnv(t, suspicionSetup{suspicious: true, threshold: 2, dnsbl: true})
	v, line := env.decide(t, listed)
	if v.Action != Defer || v.Reason != "new" || !strings.Contains(line, " suspicion=dnsbl") {
		t.Errorf("listed client: %+v\n%s", v, line)
	}
	if v, line := env.decide(t, cleanNone); v.Reason != "not-suspicious" {
		t.Errorf("unlisted client: %+v\n%s", v, line)
	}
}

func TestAlwaysMode(t *testing.T) {
	env := newSuspicionEnv(t, suspicionSetup{identity: true})
	for _, r := range []*Request{cleanPass, cleanNone, dynamic} {
		v, line := env.decide(t, r)
		if v.Action != Defer || v.Reason != "new" || strings.Contains(line, "score=") {
			t.Errorf("%s <%s>: %+v\n%s", r.ClientName, r.Sender, v, line)
		}
	}
}

// One SPF evaluation serves both the identity and the suspicion steps.
func TestSPFEvaluatedOncePerDecision(t *testing.T) {
	env := newSuspicionEnv(t, suspicionSetup{suspicious: true, threshold: 2, identity: true, cacheSize: -1})
	if v, line := env.decide(t, spfFail); v.Reason != "new" || strings.Count(line, " spf=") != 1 {
		t.Fatalf("%+v\n%s", v, line)
	}
	if n := env.dns.Queries("pool.test", 16); n != 1 {
		t.Errorf("SPF fail: %d TXT queries for pool.test, want 1", n)
	}
	env.dns.ResetCounts()
	// A pass costs the evaluation and the +all probe.
	if v, line := env.decide(t, cleanPass); v.Reason != "not-suspicious" || strings.Count(line, " spf=") != 1 {
		t.Fatalf("%+v\n%s", v, line)
	}
	if n := env.dns.Queries("pool.test", 16); n != 2 {
		t.Errorf("SPF pass: %d TXT queries for pool.test, want 2", n)
	}
}

func TestSPFIdentity(t *testing.T) {
	const delay = 6 * time.Minute // past the default 5
	tests := []struct {
		desc        string
		identity    bool
		first, then *Request
		want        string // the retry's reason
		client      string // the retry's triplet client
	}{
		{"another address of the domain's pool", true,
			client("192.0.2.10", "a.pool.test", "a.pool.test", "news@pool.test"),
			client("198.51.100.20", "b.pool.test", "b.pool.test", "news@pool.test"),
			"passed", "spf:pool.test"},
		{"an address the domain does not authorise", true,
			client("192.0.2.10", "a.pool.test", "a.pool.test", "news@pool.test"),
			client("203.0.113.9", "mx.example.test", "mx.example.test", "news@pool.test"),
			"new", "203.0.113.0/24"},
		{"identity off", false,
			client("192.0.2.10", "a.pool.test", "a.pool.test", "news@pool.test"),
			client("198.51.100.20", "b.pool.test", "b.pool.test", "news@pool.test"),
			"new", "198.51.100.0/24"},
		{"+all is no identity", true,
			client("192.0.2.10", "a.open.test", "a.open.test", "news@open.test"),
			client("198.51.100.20", "b.open.test", "b.open.test", "news@open.test"),
			"new", "198.51.100.0/24"},
		{"softfail is no identity", true,
			client("192.0.2.10", "a.soft.test", "a.soft.test", "news@soft.test"),
			client("198.51.100.20", "b.soft.test", "b.soft.test", "news@soft.test"),
			"new", "198.51.100.0/24"},
		{"null sender: the HELO name's policy", true,
			client("192.0.2.10", "a.pool.test", "mail.pool.test", ""),
			client("198.51.100.20", "b.pool.test", "mail.pool.test", ""),
			"passed", "spf:mail.pool.test"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			env := newSuspicionEnv(t, suspicionSetup{identity: tt.identity})
			if v, line := env.decide(t, tt.first); v.Action != Defer || v.Reason != "new" {
				t.Fatalf("first attempt: %+v\n%s", v, line)
			}
			env.clock.Advance(delay)
			v, line := env.decide(t, tt.then)
			if v.Reason != tt.want || !strings.Contains(line, " triplet_client="+tt.client) {
				t.Errorf("retry: %s, want %s with triplet_client=%s\n%s", v.Reason, tt.want, tt.client, line)
			}
		})
	}
}

func TestSPFIdentityAutoWhitelist(t *testing.T) {
	env := newSuspicionEnv(t, suspicionSetup{identity: true, autoWhitelist: 2})
	pass := func(rcpt, first, retry string) {
		t.Helper()
		r := client(first, "", "[x]", "news@pool.test")
		r.Recipient = rcpt
		if v, line := env.decide(t, r); v.Reason != "new" {
			t.Fatalf("%s first: %+v\n%s", rcpt, v, line)
		}
		env.clock.Advance(6 * time.Minute)
		r.ClientAddr = netip.MustParseAddr(retry)
		if v, line := env.decide(t, r); v.Reason != "passed" {
			t.Fatalf("%s retry: %+v\n%s", rcpt, v, line)
		}
	}
	pass("r0@example.net", "192.0.2.10", "198.51.100.20")
	fresh := client("198.51.100.99", "", "[x]", "other@pool.test")
	fresh.Recipient = "fresh@example.net"
	if v, line := env.decide(t, fresh); v.Reason != "new" {
		t.Fatalf("after one pass: %+v\n%s", v, line)
	}
	pass("r1@example.net", "198.51.100.20", "192.0.2.11")
	fresh.Recipient = "fresh2@example.net"
	if v, line := env.decide(t, fresh); v.Reason != "auto-whitelist" || !strings.Contains(line, "spf_domain=pool.test") {
		t.Fatalf("after two passes: %+v\n%s", v, line)
	}
	// Not seen for max-age: forgotten.
	env.clock.Advance(greylist.DefaultRules.MaxAge + time.Hour)
	fresh.Recipient = "fresh3@example.net"
	if v, line := env.decide(t, fresh); v.Reason != "new" {
		t.Fatalf("after max-age: %+v\n%s", v, line)
	}
}
