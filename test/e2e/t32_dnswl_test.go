package e2e

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// TestT32DNSWLRefused: an allow list that refuses our queries with
// dnswl.org's 127.0.0.255 abstains (the client is greylisted, not passed
// with reason=dnswl); the refusal is logged once, not per query, and
// counted in the metrics.
func TestT32DNSWLRefused(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, "testdata/dnswl.zone")
	metrics := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	gm, pf := system(t, "--delay", "1h", "--dns", srv.Addr(), "--addwl", "blocked.e2e.test", "--metrics-listen", metrics)
	for i := range 2 {
		rcpt := "t32r-" + strconv.Itoa(i) + "@" + harness.Domain
		res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "203.0.113.3", From: "a@sender.example", To: []string{rcpt}})
		if r := res.Rcpt[0]; r.Code != 451 || r.Enhanced != "4.7.1" {
			t.Fatalf("client of a refusing allow list: %v, want greylisted", r)
		}
		rec := decision(t, gm, rcpt, 1, "greylist", "new")
		if !strings.Contains(rec["dnswl_abstained"], "refused") {
			t.Errorf("decision %v, want dnswl_abstained naming the refusal", rec)
		}
	}
	if n := strings.Count(gm.Log(), "refuses our queries"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, gm.Log())
	}
	if n := metric(t, metrics, `greymilter_dnslist_refusals_total{list="dnswl",zone="blocked.e2e.test"}`); n < 2 {
		t.Errorf("refusals_total %d, want 2 or more", n)
	}
}

// TestT32DNSWLSelfTestSuspends: the self-test runs periodically; an allow
// list that fails it is suspended (its listing of the client does not
// count) and counted, and counts again once a later self-test passes.
func TestT32DNSWLSelfTestSuspends(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t, "testdata/dnswl.zone")
	metrics := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	gm, pf := system(t, "--delay", "1h", "--dns", srv.Addr(), "--addwl", "late.e2e.test",
		"--dns-selftest-interval", "1s", "--dns-max-ttl", "1s", "--metrics-listen", metrics)
	gm.WaitRecord(func(r harness.LogRecord) bool {
		return r["level"] == "WARN" && strings.Contains(r["msg"], "suspended") && r["zone"] == "late.e2e.test"
	})
	if n := metric(t, metrics, `greymilter_dnslist_suspended{list="dnswl",zone="late.e2e.test"}`); n != 1 {
		t.Errorf("suspended gauge %d, want 1", n)
	}
	rcpt := "t32s-0@" + harness.Domain
	env := harness.Envelope{ClientAddr: "203.0.113.3", From: "a@sender.example", To: []string{rcpt}}
	if r := harness.Send(t, pf.Addr, env).Rcpt[0]; r.Code != 451 {
		t.Fatalf("client of a suspended allow list: %v, want greylisted", r)
	}
	if rec := decision(t, gm, rcpt, 1, "greylist", "new"); !strings.Contains(rec["dnswl_abstained"], "suspended") {
		t.Errorf("decision %v, want dnswl_abstained naming the suspension", rec)
	}

	// The list is repaired: within a few intervals it counts again.
	if err := srv.AddRecords("2.0.0.127.late.e2e.test. 300 IN A 127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	gm.WaitRecord(func(r harness.LogRecord) bool {
		return strings.Contains(r["msg"], "passes the RFC 5782 self-test again") && r["zone"] == "late.e2e.test"
	})
	rcpt = "t32s-1@" + harness.Domain
	env.To = []string{rcpt}
	res := harness.Send(t, pf.Addr, env)
	accepted(t, "client of the resumed allow list", res.Rcpt[0])
	decision(t, gm, rcpt, 1, "pass", "dnswl")
	if n := metric(t, metrics, `greymilter_dnslist_selftest_failures_total{list="dnswl",zone="late.e2e.test"}`); n < 1 {
		t.Errorf("selftest_failures_total %d, want 1 or more", n)
	}
}

// metric reads one sample of greymilter's /metrics at addr.
func metric(t *testing.T, addr, sample string) int64 {
	t.Helper()
	var body []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: %v", err)
		}
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("metrics: %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("metrics lack %s:\n%s", sample, body)
	return 0
}
