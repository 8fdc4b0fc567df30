package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/miekg/dns"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// The DNS fault tests: the real greymilter binary, both front ends spoken
// to directly (the milter protocol as Postfix speaks it, the policy
// protocol), and the in-process DNS server misbehaving for every name
// greymilter asks. Each fault is measured at concurrency 1 and 8 on a
// fresh greymilter: the answer (a greylist deferral decided on what did
// answer, never the --on-error one), the worst time, the median once the
// circuit breaker is open, that greymilter is still alive, and that it
// recovers by itself when the server answers again.

const (
	// faultDNSTimeout is greymilter's --dns-timeout here.
	faultDNSTimeout = time.Second
	// firstBound is the target for a decision while DNS fails:
	// --dns-timeout + 0.5s, plus 0.4s for a loaded 2-core test machine.
	// Lookups one after the other would take several --dns-timeout.
	firstBound = faultDNSTimeout + 900*time.Millisecond
	// openP50 is the target median once the breaker is open.
	openP50 = 50 * time.Millisecond
	// faultDecisions is how many decisions each run makes during the fault.
	faultDecisions = 48
)

// faultNames are the names under which greymilter asks anything here: the
// lists, reverse names, and the senders' domains (SPF).
var faultNames = []string{"bl.e2e.test", "wl.e2e.test", "arpa", "fault.e2e.test"}

type dnsFault struct {
	name   string
	inject func(srv *dnstest.Server, name string)
	// breaker: the fault is silence, which opens the circuit breaker.
	breaker bool
}

var dnsFaults = []dnsFault{
	{"black hole", (*dnstest.Server).SetDrop, true},
	{"answers past the deadline", func(s *dnstest.Server, n string) { s.SetDelay(n, 3*faultDNSTimeout) }, true},
	{"SERVFAIL", func(s *dnstest.Server, n string) { s.SetRcode(n, dns.RcodeServerFailure) }, false},
	{"garbage", (*dnstest.Server).SetGarbage, false},
}

// TestT33DNSFaults is not parallel: it measures milliseconds, which the
// other tests' Postfix instances starting on the same cores would blur
// (the parallel tests wait until it is done).
func TestT33DNSFaults(t *testing.T) {
	for _, fault := range dnsFaults {
		for _, conc := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/c=%d", fault.name, conc), func(t *testing.T) {
				runDNSFault(t, fault, conc)
			})
		}
	}
}

// faultTiming is one decision's front end, answer and time.
type faultTiming struct {
	front  string
	answer string
	took   time.Duration
	end    time.Time
}

func runDNSFault(t *testing.T, fault dnsFault, conc int) {
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	gm := harness.Greymilter(t, "--dns", srv.Addr(), "--dns-timeout", faultDNSTimeout.String(),
		"-a", "bl.e2e.test", "--addwl", "wl.e2e.test", "--mode", "suspicious",
		"--policy-socket", "inet:127.0.0.1:0", "--delay", "1h", "--auto-whitelist-clients", "0",
		"--metrics-listen", metrics)
	policy := gm.PolicyAddr()
	// The lists' self-test at start must not meet the fault.
	waitSelfTest(t, srv)
	// A baseline at the same concurrency while DNS answers: the open
	// breaker's bound grows with it on a machine busy with other tests
	// (a closed breaker would cost a whole --dns-timeout a decision).
	healthyP50 := median(durations(decideBatch(t, gm.Addr, policy, conc, 1000, 16)))
	bound := max(openP50, 4*healthyP50)
	for _, n := range faultNames {
		fault.inject(srv, n)
	}

	// Every decision asks names never asked before (its own client and
	// sender domain): only the breaker, not a remembered failure, can
	// make it fast.
	start := time.Now()
	timings := decideBatch(t, gm.Addr, policy, conc, 0, faultDecisions)
	total := time.Since(start)

	var worst time.Duration
	for i, ft := range timings {
		if !isGreylisting(ft) {
			t.Errorf("decision %d (%s): %q, want a greylist deferral decided on what answered", i, ft.front, ft.answer)
		}
		worst = max(worst, ft.took)
	}
	if worst > firstBound {
		t.Errorf("worst decision %v, want under %v", worst, firstBound)
	}

	// Once the breaker is open (its log line), every decision is a matter
	// of milliseconds. Faults that answer at once are fast throughout.
	var after []time.Duration
	if fault.breaker {
		rec := gm.WaitRecord(func(r harness.LogRecord) bool { return strings.HasPrefix(r["msg"], "dns upstream down") })
		opened, err := time.Parse(time.RFC3339Nano, rec["time"])
		if err != nil {
			t.Fatalf("log time %q: %v", rec["time"], err)
		}
		for _, ft := range timings {
			if ft.end.Add(-ft.took).After(opened) {
				after = append(after, ft.took)
			}
		}
		if up := upstreamUp(t, metrics); up != "0" {
			t.Errorf("greymilter_dns_upstream_up %s while the server is silent, want 0", up)
		}
	} else {
		after = durations(timings)
	}
	if len(after) < faultDecisions/2 {
		t.Fatalf("only %d of %d decisions after the breaker opened", len(after), faultDecisions)
	}
	p50 := median(after)
	if p50 > bound {
		t.Errorf("median decision %v after the breaker opened, want under %v (%v, or 4x the median %v with DNS answering)", p50, bound, openP50, healthyP50)
	}

	// Still alive, and back by itself once the server answers: a listed
	// client (never asked during the fault) is rejected again.
	gm.Signal(syscall.Signal(0))
	for _, n := range faultNames {
		srv.Reset(n)
	}
	healed := time.Now()
	var recovered time.Duration
	for i := 0; ; i++ {
		answer, err := milterRcpt(gm.Addr, "203.0.113.1", "a@sender.example", fmt.Sprintf("back%d@%s", i, harness.Domain))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(answer, "550 5.7.1 Rejected. Address 203.0.113.1 found in bl.e2e.test") {
			recovered = time.Since(healed)
			break
		}
		if time.Since(healed) > 15*time.Second {
			t.Fatalf("no recovery 15s after the DNS server answers again: %q\n%s", answer, gm.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fault.breaker {
		if up := upstreamUp(t, metrics); up != "1" {
			t.Errorf("greymilter_dns_upstream_up %s after recovery, want 1", up)
		}
		gm.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "dns upstream back" })
		if n := strings.Count(gm.Log(), "dns upstream down"); n != 1 {
			t.Errorf("%d \"dns upstream down\" lines for one episode, want 1", n)
		}
	}
	gm.Signal(syscall.Signal(0))
	t.Logf("FIGURES fault=%q c=%d decisions=%d in %v: answer=greylist worst=%v p50_after_breaker=%v (of %d) recovered_in=%v",
		fault.name, conc, len(timings), total.Round(time.Millisecond), worst.Round(time.Millisecond), p50.Round(100*time.Microsecond), len(after), recovered.Round(time.Millisecond))
}

// decideBatch makes n decisions, from index first on, at concurrency conc
// through both front ends, each with a client and sender domain of its
// own, and returns their timings.
func decideBatch(t *testing.T, milterAddr, policy string, conc, first, n int) []faultTiming {
	t.Helper()
	var (
		mu      sync.Mutex
		timings []faultTiming
		wg      sync.WaitGroup
		next    = make(chan int)
	)
	for w := range conc {
		wg.Go(func() {
			pc := dialPolicy(t, policy)
			defer pc.Close()
			for i := range next {
				client := fmt.Sprintf("198.51.%d.%d", 100+i/200, 1+i%200)
				sender := fmt.Sprintf("a@s%d.fault.e2e.test", i)
				rcpt := fmt.Sprintf("r%d@%s", i, harness.Domain)
				ft := faultTiming{front: "milter"}
				t0 := time.Now()
				var err error
				if (i+w)%2 == 0 {
					ft.answer, err = milterRcpt(milterAddr, client, sender, rcpt)
				} else {
					ft.front = "policy"
					ft.answer, err = pc.ask(client, sender, rcpt)
				}
				ft.took, ft.end = time.Since(t0), time.Now()
				if err != nil {
					t.Errorf("decision %d (%s): %v", i, ft.front, err)
					return
				}
				mu.Lock()
				timings = append(timings, ft)
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- first + i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return timings
}

func durations(ts []faultTiming) []time.Duration {
	ds := make([]time.Duration, len(ts))
	for i, ft := range ts {
		ds[i] = ft.took
	}
	return ds
}

func isGreylisting(ft faultTiming) bool {
	if ft.front == "milter" {
		return greylistedText.MatchString(strings.TrimPrefix(ft.answer, "451 4.7.1 "))
	}
	return strings.HasPrefix(ft.answer, "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in ")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// waitSelfTest waits until greymilter's self-test of both lists asked the
// server.
func waitSelfTest(t *testing.T, srv *dnstest.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, zone := range []string{"bl.e2e.test", "wl.e2e.test"} {
		for _, name := range []string{"2.0.0.127." + zone, "1.0.0.127." + zone} {
			for srv.Queries(name, dns.TypeA) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no self-test query for %s", name)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // the last answer on its way back
}

// milterRcpt runs one milter session as Postfix does, up to RCPT, and
// returns greymilter's answer to RCPT ("451 4.7.1 ..." or "continue").
func milterRcpt(addr, client, sender, rcpt string) (string, error) {
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, ActionMask: gomilter.OptAddHeader,
	})
	s, err := c.Session()
	if err != nil {
		return "", err
	}
	defer s.Close()
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Conn("unknown", gomilter.FamilyInet, 25000, client) },
		func() (*gomilter.Action, error) { return s.Helo("mail.fault.e2e.test") },
		func() (*gomilter.Action, error) { return s.Mail(sender, nil) },
	}
	for _, step := range steps {
		if a, err := step(); err != nil || a.Code != gomilter.ActContinue {
			return "", fmt.Errorf("milter session before RCPT: %v %v", a, err)
		}
	}
	a, err := s.Rcpt(rcpt, nil)
	switch {
	case err != nil:
		return "", err
	case a.Code == gomilter.ActReplyCode:
		return fmt.Sprintf("%d %s", a.SMTPCode, a.SMTPText), nil
	}
	return fmt.Sprintf("action %c", a.Code), nil
}

// policyConn is one policy connection, reused as Postfix does.
type policyConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialPolicy(t *testing.T, addr string) *policyConn {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &policyConn{c: c, r: bufio.NewReader(c)}
}

func (p *policyConn) Close() error { return p.c.Close() }

// ask sends one RCPT request and returns the action's value.
func (p *policyConn) ask(client, sender, rcpt string) (string, error) {
	p.c.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck // a fresh deadline on a live socket
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=" + client +
		"\nclient_name=unknown\nreverse_client_name=unknown\nhelo_name=mail.fault.e2e.test\nsender=" + sender +
		"\nrecipient=" + rcpt + "\ninstance=" + rcpt + "\n\n"
	if _, err := io.WriteString(p.c, req); err != nil {
		return "", err
	}
	var action string
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("policy answer: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return action, nil
		}
		if v, ok := strings.CutPrefix(line, "action="); ok {
			action = v
		}
	}
}

// upstreamUp reads greymilter_dns_upstream_up from greymilter's metrics.
func upstreamUp(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "greymilter_dns_upstream_up{") {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	t.Fatalf("no greymilter_dns_upstream_up in the metrics:\n%s", body)
	return ""
}
