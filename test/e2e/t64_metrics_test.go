package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// askPolicy sends one Postfix policy request (RCPT stage) to addr and
// returns greymilter's action line.
func askPolicy(t *testing.T, addr, client, sender, recipient string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second)) //nolint:errcheck
	fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=mail.sender.example\nhelo_name=mail.sender.example\nsender=%s\nrecipient=%s\n\n",
		client, sender, recipient)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("policy answer: %v", err)
	}
	return strings.TrimSpace(line)
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 15 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape reads greymilter's /metrics.
func scrape(t *testing.T, gm *harness.GreymilterProcess) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := get(t, gm.MetricsURL()+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// sample finds the sample of family name whose labels are labels (name,
// value pairs); ok is false when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (m *dto.Metric, ok bool) {
	f := fams[name]
	if f == nil {
		return nil, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m, true
	}
	return nil, false
}

// value is a counter's or gauge's value, or a histogram's count.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m, ok := sample(fams, name, labels...)
	if !ok {
		t.Errorf("no sample %s%v", name, labels)
		return -1
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Errorf("%s%v: neither counter, gauge nor histogram", name, labels)
	return -1
}

// TestT64MetricsAfterDecisions drives the real binary through a scripted
// set of policy decisions and checks the exact counters it serves, then
// breaks its store for real (another process holds SQLite's write lock, as
// an administrator's sqlite3 shell left in a transaction does) and checks
// that /healthz says so, and recovers.
func TestT64MetricsAfterDecisions(t *testing.T) {
	t.Parallel()
	harness.Require(t, "sqlite3")
	gm := harness.Greymilter(t, "--policy-socket", "inet:127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--delay", "2s", "--purge-unverified", "4s", "--purge-interval", "1s")
	policy := gm.PolicyAddr()
	base := gm.MetricsURL()
	// The store is ready once its in-memory index is filled, in the
	// background after start: on an empty file at once, on a busy machine
	// a moment later.
	if status, body := 0, ""; !waitFor(nil, 10*time.Second, func() bool {
		status, body = get(t, base+"/readyz")
		return status == http.StatusOK && body == "ok\n"
	}) {
		t.Fatalf("/readyz 10s after start: %d %q", status, body)
	}

	a, b := "a-t64@"+harness.Domain, "b-t64@"+harness.Domain
	const sender = "alice@sender.example"
	start := time.Now()
	for i, want := range []string{"DEFER_IF_PERMIT", "DEFER_IF_PERMIT"} {
		if got := askPolicy(t, policy, "192.0.2.60", sender, a); !strings.HasPrefix(got, "action="+want) {
			t.Fatalf("attempt %d of a: %q, want %s", i+1, got, want)
		}
	}
	if got := askPolicy(t, policy, "192.0.2.61", sender, b); !strings.HasPrefix(got, "action=DEFER_IF_PERMIT") {
		t.Fatalf("b: %q", got)
	}
	time.Sleep(time.Until(start.Add(2500 * time.Millisecond)))
	if got := askPolicy(t, policy, "192.0.2.60", sender, a); !strings.HasPrefix(got, "action=PREPEND X-Greylist: delayed") {
		t.Fatalf("a after the delay: %q, want a pass with its header", got)
	}
	if got := askPolicy(t, policy, "192.0.2.60", sender, a); got != "action=DUNNO" {
		t.Fatalf("a known: %q", got)
	}
	// b never came back: the purge of unverified triplets (after 4s,
	// every second) counts it as never retried.
	gm.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "purged" && r["unverified"] == "1" })

	fams := scrape(t, gm)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"greymilter_decisions_total", []string{"action", "greylist", "reason", "new"}, 2},
		{"greymilter_decisions_total", []string{"action", "greylist", "reason", "early-retry"}, 1},
		{"greymilter_decisions_total", []string{"action", "pass", "reason", "passed"}, 1},
		{"greymilter_decisions_total", []string{"action", "pass", "reason", "known"}, 1},
		{"greymilter_decision_seconds", nil, 5},
		{"greymilter_greylist_triplets_greylisted_total", nil, 2},
		{"greymilter_greylist_triplets_passed_total", nil, 1},
		{"greymilter_greylist_unverified_purged_total", nil, 1},
		{"greymilter_greylist_never_retried_purged_total", nil, 1},
		{"greymilter_greylist_delay_seconds", nil, 1},
		// Every decision looks its triplet up; the four that did not
		// know it also asked for the client's passes, and wrote.
		{"greymilter_store_operation_seconds", []string{"op", "lookup"}, 5},
		{"greymilter_store_operation_seconds", []string{"op", "client"}, 4},
		{"greymilter_store_operation_seconds", []string{"op", "attempt"}, 4},
		{"greymilter_store_triplets", nil, 1},
		{"greymilter_store_triplets_passed", nil, 1},
		{"greymilter_store_clients", nil, 1},
		{"greymilter_store_auto_whitelisted_clients", nil, 0},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if m, ok := sample(fams, "greymilter_greylist_delay_seconds"); ok {
		if sum := m.Histogram.GetSampleSum(); sum < 2 || sum > 10 {
			t.Errorf("real delay %vs, want 2.5s give or take the machine's load", sum)
		}
	}
	for _, name := range []string{"go_goroutines", "go_gc_duration_seconds", "process_open_fds", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	if status, body := get(t, base+"/healthz"); status != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz of a sound store: %d %q", status, body)
	}
	// Another process takes the database's write lock and keeps it.
	shell := exec.Command("sqlite3", gm.DB)
	stdin, err := shell.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var shellOut strings.Builder
	shell.Stdout, shell.Stderr = &shellOut, &shellOut
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); shell.Wait() }) //nolint:errcheck
	fmt.Fprintln(stdin, "BEGIN IMMEDIATE; SELECT 'locked';")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(shellOut.String(), "locked"); {
		if time.Now().After(deadline) {
			t.Fatalf("sqlite3 did not take the lock: %q", shellOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	asked := time.Now()
	status, body := get(t, base+"/healthz")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "store does not answer") {
		t.Errorf("/healthz with the store locked by another process: %d %q, want 503 naming the store", status, body)
	}
	if took := time.Since(asked); took > 8*time.Second {
		t.Errorf("/healthz took %v to answer, want its 2s bound", took)
	}
	fmt.Fprintln(stdin, "ROLLBACK;")
	stdin.Close()
	if err := shell.Wait(); err != nil {
		t.Fatalf("sqlite3: %v %s", err, shellOut.String())
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		status, body = get(t, base+"/healthz")
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz after the lock was released: %d %q", status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestT64DNSListMetrics checks the per-list counters after decisions of
// clients that every list answers for: a hit with a refusal, a hit with a
// list that does not answer in time, and the first again from the cache.
func TestT64DNSListMetrics(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, "testdata/t64.zone")
	srv.SetDrop("2.113.0.203.refusing.t64.test.")
	// Policy all: a client is listed when every list that answered lists
	// it, so no answer makes the outcome certain before the others come
	// (and each lookup finishes and is counted).
	gm := harness.Greymilter(t, "--dns", srv.Addr(), "--dns-timeout", "500ms", "--policy", "all",
		"--addbl", "bl.t64.test", "--addbl", "refusing.t64.test",
		"--policy-socket", "inet:127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	policy := gm.PolicyAddr()
	for _, client := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.1"} {
		if got := askPolicy(t, policy, client, "alice@sender.example", "c-t64@"+harness.Domain); !strings.HasPrefix(got, "action=550 5.7.1 ") || !strings.Contains(got, "found in bl.t64.test") {
			t.Fatalf("%s: %q, want a rejection", client, got)
		}
	}
	fams := scrape(t, gm)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"greymilter_dnslist_queries_total", []string{"list", "dnsbl", "zone", "bl.t64.test"}, 3},
		{"greymilter_dnslist_hits_total", []string{"list", "dnsbl", "zone", "bl.t64.test"}, 3},
		{"greymilter_dnslist_queries_total", []string{"list", "dnsbl", "zone", "refusing.t64.test"}, 3},
		{"greymilter_dnslist_hits_total", []string{"list", "dnsbl", "zone", "refusing.t64.test"}, 0},
		{"greymilter_dnslist_abstentions_total", []string{"zone", "refusing.t64.test", "reason", "refused"}, 2},
		{"greymilter_dnslist_abstentions_total", []string{"zone", "refusing.t64.test", "reason", "timeout"}, 1},
		{"greymilter_dnslist_abstentions_total", []string{"zone", "bl.t64.test", "reason", "timeout"}, 0},
		// Answers from the servers are timed; the third check's came from the cache.
		{"greymilter_dnslist_query_seconds", []string{"zone", "bl.t64.test"}, 2},
		{"greymilter_dnslist_query_seconds", []string{"zone", "refusing.t64.test"}, 2},
		{"greymilter_decisions_total", []string{"action", "reject", "reason", "dnsbl"}, 3},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if m, ok := sample(fams, "greymilter_dnslist_query_seconds", "zone", "refusing.t64.test"); ok {
		if sum := m.Histogram.GetSampleSum(); sum < 0.4 {
			t.Errorf("refusing.t64.test answer time %vs, want the 0.5s timeout in it", sum)
		}
	}
}
