package e2e

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// loggingRun starts greymilter with args and a DNS list on a DNS server of
// its own, sends one mail from a client the list does not list, waits for
// its decision line and returns greymilter's log.
func loggingRun(t *testing.T, rcpt string, args ...string) *harness.GreymilterProcess {
	t.Helper()
	srv := dnstest.Start(t, "testdata/dnsbl.zone")
	gm := harness.Greymilter(t, append([]string{"--delay", "1h", "--dns", srv.Addr(), "-a", "bl.e2e.test"}, args...)...)
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "203.0.113.4", From: "a@sender.example", To: []string{rcpt + "@" + harness.Domain}})
	if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 451 {
		t.Fatalf("%+v, want a greylisting deferral", res)
	}
	return gm
}

// TestT73Verbosity: without -v greymilter says only what happens to it
// (listening); -v adds one line per decision; -vv each step's result and
// the DNS lists' answers; -vvv the protocol exchanges; every line is
// marked with its component.
func TestT73Verbosity(t *testing.T) {
	t.Parallel()
	quiet := loggingRun(t, "t73-quiet", "--verbose=0")
	vv := loggingRun(t, "t73-vv", "-vv")
	vvv := loggingRun(t, "t73-vvv", "-vvv")

	rec := vv.WaitRecord(harness.DecisionFor("t73-vv@" + harness.Domain))
	if rec["component"] != "engine" || rec["level"] != "INFO" || rec["action"] != "greylist" {
		t.Errorf("decision line %v, want component=engine level=INFO action=greylist", rec)
	}
	step := vv.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "step" && r["step"] == "greylist" })
	if step["level"] != "DEBUG" || step["settled"] != "true" || step["reason"] != "new" || step["component"] != "engine" {
		t.Errorf("greylist step line %v, want level=DEBUG settled=true reason=new component=engine", step)
	}
	if r := vv.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "step" && r["step"] == "dnsbl" }); r["settled"] != "false" {
		t.Errorf("dnsbl step line %v, want settled=false", r)
	}
	answer := vv.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "DNS list answer" })
	if answer["zone"] != "bl.e2e.test" || answer["listed"] != "false" || answer["client"] != "203.0.113.4" || answer["component"] != "dns" {
		t.Errorf("DNS answer line %v, want zone=bl.e2e.test listed=false component=dns", answer)
	}
	for _, r := range vv.Records() {
		if r["component"] == "" {
			t.Errorf("a line without component=: %v", r)
		}
	}

	// -vvv: the protocol exchange, which -vv leaves out.
	ex := vvv.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "milter exchange" })
	if ex["level"] != "TRACE" || ex["component"] != "milter" || ex["recipient"] != "t73-vvv@"+harness.Domain || ex["answer"] != "greylist" {
		t.Errorf("milter exchange line %v, want level=TRACE component=milter answer=greylist for t73-vvv", ex)
	}
	// and the SQL timing of the store's transactions.
	tx := vvv.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "sql transaction" })
	if tx["level"] != "TRACE" || tx["component"] != "store" || tx["took"] == "" || tx["operations"] == "" {
		t.Errorf("sql transaction line %v, want level=TRACE component=store with took= and operations=", tx)
	}
	for _, r := range vv.Records() {
		if r["level"] == "TRACE" {
			t.Errorf("a trace line at -vv: %v", r)
		}
	}

	var listening, decisions int
	for _, r := range quiet.Records() {
		switch r["msg"] {
		case "listening":
			listening++
		case "decision", "step":
			decisions++
		}
	}
	if listening == 0 || decisions != 0 {
		t.Errorf("without -v: %d listening and %d decision or step lines, want some and none:\n%s", listening, decisions, quiet.Log())
	}
}

// TestT73JSONLogs: with --log-format json every line is a JSON object, and
// a decision's line has the same keys as in text.
func TestT73JSONLogs(t *testing.T) {
	t.Parallel()
	text := loggingRun(t, "t73-text")
	js := loggingRun(t, "t73-json", "--log-format", "json")
	textRec := text.WaitRecord(harness.DecisionFor("t73-text@" + harness.Domain))
	js.WaitRecord(harness.DecisionFor("t73-json@" + harness.Domain))

	var decision map[string]any
	for _, line := range strings.Split(strings.TrimSpace(js.Log()), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the "ready" lines for the administrator
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not JSON: %q: %v", line, err)
			continue
		}
		if rec["msg"] == "decision" {
			decision = rec
		}
	}
	if decision == nil {
		t.Fatalf("no JSON decision line:\n%s", js.Log())
	}
	textKeys := slices.Sorted(maps.Keys(textRec))
	jsonKeys := slices.Sorted(maps.Keys(decision))
	if !slices.Equal(textKeys, jsonKeys) {
		t.Errorf("decision keys differ:\ntext %v\njson %v", textKeys, jsonKeys)
	}
	if decision["action"] != "greylist" || decision["component"] != "engine" {
		t.Errorf("JSON decision %v", decision)
	}
}
