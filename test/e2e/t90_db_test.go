package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

// gmDB runs `greymilter db ARGS --db DB` of gm: through the running
// greymilter's control socket (DB.ctl) when it runs, on the file when not.
func gmDB(t *testing.T, gm *harness.GreymilterProcess, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return gmDBInput(t, gm, nil, args...)
}

func gmDBInput(t *testing.T, gm *harness.GreymilterProcess, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return dbAt(t, gm.DB, stdin, args...)
}

// dbAt runs `greymilter db ARGS --db db`.
func dbAt(t *testing.T, db string, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(harness.GreymilterBinary(t), append(append([]string{"db"}, args...), "--db", db)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("greymilter db %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustDB runs gmDB and fails the test unless it exits 0 with want in its
// output.
func mustDB(t *testing.T, gm *harness.GreymilterProcess, want string, args ...string) string {
	t.Helper()
	out, errOut, code := gmDB(t, gm, args...)
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("greymilter db %s: exit %d, want 0 and %q in the output\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

// listed returns the triplets `db list --json FILTER` gives.
func listed(t *testing.T, gm *harness.GreymilterProcess, filter ...string) []map[string]any {
	t.Helper()
	out := mustDB(t, gm, "", append([]string{"list", "--json"}, filter...)...)
	var ts []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("db list --json: %q: %v", line, err)
		}
		ts = append(ts, m)
	}
	return ts
}

// TestT90DBWhitelist: `db whitelist` reaches the running greymilter (the
// next attempt of a greylisted client passes, no restart), survives a
// restart, and `db whitelist --remove` ends it at once.
func TestT90DBWhitelist(t *testing.T) {
	t.Parallel()
	gm, pf := system(t, "--delay", "1h")
	rcpt := "t90w@" + harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.71", From: "alice@sender.example", To: []string{rcpt}}
	if r := harness.Send(t, pf.Addr, env).Rcpt[0]; r.Code != 451 {
		t.Fatalf("first attempt: %v, want 451", r)
	}
	if fi, err := os.Stat(gm.DB + ".ctl"); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %s.ctl: %v %v, want a socket of mode 0600", gm.DB, fi, err)
	}
	mustDB(t, gm, "whitelisted 192.0.2.0/24 until ", "whitelist", "--client", "192.0.2.0/24", "--for", "2h", "--note", "t90")
	mustDB(t, gm, "through the running greymilter", "whitelist", "--client", "2001:db8:70::/48")
	res := harness.Send(t, pf.Addr, env)
	accepted(t, "after db whitelist", res.Rcpt[0])
	pf.WaitMessage(t, rcpt, res.MessageID)
	if rec := decision(t, gm, rcpt, 2, "pass", "runtime-whitelist"); rec["whitelist_entry"] != "192.0.2.0/24" {
		t.Errorf("decision %v, want whitelist_entry=192.0.2.0/24", rec)
	}
	out := mustDB(t, gm, "2 entries", "whitelist")
	if !strings.Contains(out, "192.0.2.0/24") || !strings.Contains(out, "t90") || !strings.Contains(out, "2001:db8:70::/48") {
		t.Errorf("db whitelist lists:\n%s", out)
	}

	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	// Without the daemon the commands work on the file.
	mustDB(t, gm, "2 entries", "whitelist")
	mustDB(t, gm, "whitelisted 203.0.113.0/24 until removed, in "+gm.DB, "whitelist", "--client", "203.0.113.7/24")
	gm.Restart()
	accepted(t, "whitelisted after a restart", harness.Send(t, pf.Addr, env).Rcpt[0])
	decision(t, gm, rcpt, 3, "pass", "runtime-whitelist")
	env2 := harness.Envelope{ClientAddr: "203.0.113.8", From: "carol@sender.example", To: []string{"t90w2@" + harness.Domain}}
	accepted(t, "whitelisted on the file while stopped", harness.Send(t, pf.Addr, env2).Rcpt[0])
	decision(t, gm, env2.To[0], 1, "pass", "runtime-whitelist")

	mustDB(t, gm, "removed 192.0.2.0/24 from the whitelist through the running greymilter", "whitelist", "--remove", "--client", "192.0.2.0/24")
	if r := harness.Send(t, pf.Addr, env).Rcpt[0]; r.Code != 451 {
		t.Fatalf("after db whitelist --remove: %v, want 451", r)
	}
	decision(t, gm, rcpt, 4, "greylist", "early-retry")
	if _, errOut, code := gmDB(t, gm, "whitelist", "--client", "not-an-address"); code != 2 || !strings.Contains(errOut, "not-an-address") {
		t.Errorf("whitelist of a bad address: exit %d, %s", code, errOut)
	}
}

// TestT90DBListPassDelete: `db list` shows what the daemon stored, `db
// pass` makes the next attempt known, `db delete` makes it a new triplet,
// and deleting more than one triplet asks for --yes; then the same
// commands straight on the file while greymilter is stopped, which it
// sees once started again.
func TestT90DBListPassDelete(t *testing.T) {
	t.Parallel()
	gm, pf := system(t, "--delay", "1h")
	rcpt, other := "t90d@"+harness.Domain, "t90d-other@"+harness.Domain
	env := harness.Envelope{ClientAddr: "198.51.100.72", From: "bob@sender.example", To: []string{rcpt}}
	send := func(what string, to string, code int) {
		t.Helper()
		env.To = []string{to}
		if r := harness.Send(t, pf.Addr, env).Rcpt[0]; r.Code != code {
			t.Fatalf("%s: %v, want %d", what, r, code)
		}
	}
	send("first attempt", rcpt, 451)
	send("first attempt to another recipient", other, 451)

	ts := listed(t, gm, "--client", "198.51.100.72", "--recipient", rcpt)
	if len(ts) != 1 || ts[0]["client"] != "198.51.100.0/24" || ts[0]["sender"] != "bob@sender.example" || ts[0]["attempts"] != 1.0 || ts[0]["passed_at"] != nil {
		t.Fatalf("db list: %v", ts)
	}
	out := mustDB(t, gm, "2 triplets", "list", "--pending")
	if !strings.Contains(out, "<"+rcpt+">") || !strings.Contains(out, "198.51.100.0/24") {
		t.Errorf("db list --pending:\n%s", out)
	}
	mustDB(t, gm, "0 triplets", "list", "--passed")

	mustDB(t, gm, "passed 1 triplets through the running greymilter", "pass", "--recipient", rcpt)
	send("after db pass", rcpt, 250)
	decision(t, gm, rcpt, 2, "pass", "known")
	if ts := listed(t, gm, "--passed"); len(ts) != 1 || ts[0]["recipient"] != rcpt {
		t.Errorf("db list --passed after db pass: %v", ts)
	}

	// Two triplets match: refused without --yes, nothing deleted.
	_, errOut, code := gmDB(t, gm, "delete", "--client", "198.51.100.0/24")
	if code != 2 || !strings.Contains(errOut, "2 triplets match; give --yes") {
		t.Errorf("delete of two without --yes: exit %d, %s", code, errOut)
	}
	mustDB(t, gm, "deleted 1 triplets through the running greymilter", "delete", "--client", "198.51.100.72", "--recipient", rcpt)
	send("after db delete", rcpt, 451)
	decision(t, gm, rcpt, 3, "greylist", "new")
	mustDB(t, gm, "deleted 2 triplets", "delete", "--client", "198.51.100.0/24", "--yes")
	mustDB(t, gm, "0 triplets", "list")

	// Straight on the file, greymilter stopped.
	send("first attempt again", rcpt, 451)
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	if ts := listed(t, gm, "--pending"); len(ts) != 1 || ts[0]["recipient"] != rcpt {
		t.Fatalf("db list on the file: %v", ts)
	}
	mustDB(t, gm, "passed 1 triplets in "+gm.DB, "pass", "--recipient", rcpt)
	mustDB(t, gm, "purged 0 triplets not seen for max-age, 0 that never passed, 0 clients, in "+gm.DB, "purge")
	gm.Restart()
	send("after db pass on the file", rcpt, 250)
	decision(t, gm, rcpt, 5, "pass", "known")
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	mustDB(t, gm, "deleted 1 triplets in "+gm.DB, "delete", "--recipient", rcpt)
	gm.Restart()
	send("after db delete on the file", rcpt, 451)
	decision(t, gm, rcpt, 6, "greylist", "new")
	mustDB(t, gm, "purged 0 triplets not seen for max-age, 0 that never passed, 0 clients, through the running greymilter", "purge")
}

// TestT90DBExplain: `db explain` gives the verdict that the next real
// decision gives, for a client on a list file, one on a DNSBL (the
// in-process DNS server), a suspicious one, a clean one, a known triplet
// and a new one; and it writes nothing (the new triplet stays new).
func TestT90DBExplain(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix")
	srv := dnstest.Start(t, "testdata/suspicion.zone", "testdata/dnsbl.zone")
	dir := t.TempDir()
	wl := filepath.Join(dir, "wl_clients")
	if err := os.WriteFile(wl, []byte("# friends\n192.0.2.20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gm, pf := system(t, "--dns", srv.Addr(), "--delay", "1h", "--mode", "suspicious", "-a", "bl.e2e.test", "--whitelist-clients", wl, "--no-default-whitelist")

	known := harness.Envelope{ClientAddr: "203.0.113.60", ClientName: "dsl-203-0-113-60.dyn.isp.e2e.test", Helo: "desktop-7f3k", From: "carol@other.e2e.test"}
	known.To = []string{"t90x-known@" + harness.Domain}
	if r := harness.Send(t, pf.Addr, known).Rcpt[0]; r.Code != 451 {
		t.Fatalf("known triplet's first attempt: %v", r)
	}
	mustDB(t, gm, "passed 1 triplets", "pass", "--recipient", known.To[0])

	cases := []struct {
		name   string
		env    harness.Envelope
		action string
		reason string
		notes  []string // step: key = value in the explanation
	}{
		{"list file", harness.Envelope{ClientAddr: "192.0.2.20", ClientName: "friend.example", Helo: "friend.example", From: "a@friend.example"},
			"pass", "whitelist", []string{"lists: list = " + wl + ":2"}},
		{"DNSBL", harness.Envelope{ClientAddr: "203.0.113.1", ClientName: "mx.bad.example", Helo: "mx.bad.example", From: "a@bad.example"},
			"reject", "dnsbl", []string{"dnsbl: dnsbl = bl.e2e.test(127.0.0.2)"}},
		{"suspicious", dynamicSender(""), "greylist", "new", []string{"suspicion: check_dynamic = +2:address:octets", "suspicion: score = 4", "greylist: stored = none"}},
		{"clean", cleanSender(""), "pass", "not-suspicious", []string{"spf: spf = pass", "spf: spf_domain = clean.e2e.test", "suspicion: score = -1"}},
		{"known", known, "pass", "known", []string{"known: stored = first_seen="}},
	}
	for i, c := range cases {
		rcpt := c.env.To
		if len(rcpt) == 0 || rcpt[0] == "" {
			rcpt = []string{"t90x-" + string(rune('a'+i)) + "@" + harness.Domain}
		}
		c.env.To = rcpt
		args := []string{"explain", "--client", c.env.ClientAddr, "--helo", c.env.Helo, "--sender", c.env.From, "--recipient", rcpt[0]}
		if c.env.ClientName != "" {
			args = append(args, "--name", c.env.ClientName)
		}
		before := len(listed(t, gm))
		out := mustDB(t, gm, "verdict: "+c.action+" ", args...)
		for _, n := range c.notes {
			step, note, _ := strings.Cut(n, ": ")
			if !strings.Contains(out, ". "+step) || !strings.Contains(out, "     "+note) {
				t.Errorf("%s: explanation lacks %s:\n%s", c.name, n, out)
			}
		}
		if !strings.Contains(out, "reason "+c.reason+")") {
			t.Errorf("%s: explained\n%s\nwant reason %s", c.name, out, c.reason)
		}
		if after := len(listed(t, gm)); after != before {
			t.Errorf("%s: explain wrote: %d triplets before, %d after", c.name, before, after)
		}
		jsonOut := mustDB(t, gm, `"action"`, append(args, "--json")...)
		var x struct{ Action, Reason, Step string }
		if err := json.Unmarshal([]byte(jsonOut), &x); err != nil || x.Action != c.action || x.Reason != c.reason {
			t.Errorf("%s: explain --json: %+v %v\n%s", c.name, x, err, jsonOut)
		}
		// The next real decision agrees.
		harness.Send(t, pf.Addr, c.env)
		n := 1
		if c.name == "known" {
			n = 2
		}
		decision(t, gm, rcpt[0], n, c.action, c.reason)
	}
	// The suspicious triplet is stored now: explained as an early retry,
	// as the next decision is.
	out := mustDB(t, gm, "verdict: greylist (step greylist, reason early-retry)", "explain", "--client", "203.0.113.50", "--name", "dsl-203-0-113-50.dyn.isp.e2e.test", "--helo", "desktop-7f3k", "--sender", "bob@other.e2e.test", "--recipient", "t90x-c@"+harness.Domain)
	if !strings.Contains(out, "stored = first_seen=") || !strings.Contains(out, "attempts=1") {
		t.Errorf("explanation of a stored triplet:\n%s", out)
	}

	// Without the daemon there is nothing to explain with.
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := gmDB(t, gm, "explain", "--client", "192.0.2.1", "--sender", "a@b.example", "--recipient", "c@d.example"); code == 0 || !strings.Contains(errOut, "explain needs the running greymilter") {
		t.Errorf("explain without a daemon: exit %d, %s", code, errOut)
	}
}

// TestT90DBExportImport: export from one greymilter, import into another
// through its control socket, and into a stopped one's file: the copies
// decide as the original (known triplet passes, waiting one waits on, the
// whitelist holds) and export the same lines.
func TestT90DBExportImport(t *testing.T) {
	t.Parallel()
	gm, pf := system(t, "--delay", "1h")
	env := harness.Envelope{ClientAddr: "198.51.100.73", From: "dave@sender.example", To: []string{"t90e-passed@" + harness.Domain}}
	harness.Send(t, pf.Addr, env)
	mustDB(t, gm, "passed 1", "pass", "--recipient", env.To[0])
	env.To = []string{"t90e-waiting@" + harness.Domain}
	harness.Send(t, pf.Addr, env)
	harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "192.0.2.73", From: "", To: []string{"t90e-null@" + harness.Domain}})
	mustDB(t, gm, "whitelisted", "whitelist", "--client", "203.0.113.0/24", "--note", "partner")
	exported := mustDB(t, gm, `"type":"triplet"`, "export")
	if n := strings.Count(exported, "\n"); n != 4 {
		t.Fatalf("export: %d lines, want 3 triplets and 1 whitelist entry:\n%s", n, exported)
	}

	gm2, pf2 := system(t, "--delay", "1h")
	out, errOut, code := gmDBInput(t, gm2, []byte(exported), "import")
	if code != 0 || !strings.Contains(out, "imported 3 triplets, 0 clients, 1 whitelist entries through the running greymilter") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	env.To = []string{"t90e-passed@" + harness.Domain}
	accepted(t, "imported passed triplet", harness.Send(t, pf2.Addr, env).Rcpt[0])
	decision(t, gm2, env.To[0], 1, "pass", "known")
	env.To = []string{"t90e-waiting@" + harness.Domain}
	if r := harness.Send(t, pf2.Addr, env).Rcpt[0]; r.Code != 451 {
		t.Fatalf("imported waiting triplet: %v", r)
	}
	decision(t, gm2, env.To[0], 1, "greylist", "early-retry")
	env2 := harness.Envelope{ClientAddr: "203.0.113.9", From: "x@partner.example", To: []string{"t90e-wl@" + harness.Domain}}
	accepted(t, "imported whitelist", harness.Send(t, pf2.Addr, env2).Rcpt[0])

	// Into a stopped greymilter's file.
	gm3 := harness.Greymilter(t, "--delay", "1h")
	if err := gm3.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := gmDBInput(t, gm3, []byte(exported), "import", "-"); code != 0 || !strings.Contains(out, "in "+gm3.DB) {
		t.Fatalf("import into the file: exit %d\n%s%s", code, out, errOut)
	}
	again, _, _ := gmDB(t, gm3, "export")
	if !sameLines(again, exported) {
		t.Errorf("export of the import:\n%s\nwant:\n%s", again, exported)
	}

	// A bad line is named and nothing is imported.
	bad := exported + `{"type":"triplet","client":"192.0.2.0/24"}` + "\n"
	gm4 := harness.Greymilter(t, "--delay", "1h")
	if _, errOut, code := gmDBInput(t, gm4, []byte(bad), "import"); code != 2 || !strings.Contains(errOut, "stdin:5:") {
		t.Errorf("import of a bad line: exit %d, %s", code, errOut)
	}
	if out := mustDB(t, gm4, "0 triplets", "list"); !strings.Contains(out, "0 triplets") {
		t.Errorf("a failed import wrote:\n%s", out)
	}
}

func sameLines(a, b string) bool {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestT90DBControlSocketOwner: under --user nobody the control socket is
// bound before the switch, owned by nobody with mode 0600: root and nobody
// reach the daemon through it, another user does not.
func TestT90DBControlSocketOwner(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	uid, gid, _ := lookupIDs(t, "nobody", "nogroup")
	dbDir := dirOwnedBy(t, filepath.Join(harness.TempDir(t), "db"), uid, gid, 0o755)
	gm := harness.Greymilter(t, "--user", "nobody", "--db", filepath.Join(dbDir, "greymilter.db"))
	gm.DB = filepath.Join(dbDir, "greymilter.db")
	fi, err := os.Stat(gm.DB + ".ctl")
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 || int(st.Uid) != uid {
		t.Fatalf("control socket: %v uid %d, want a socket 0600 owned by nobody (%d)", fi.Mode(), st.Uid, uid)
	}
	mustDB(t, gm, "through the running greymilter", "whitelist", "--client", "192.0.2.80")
	bin := harness.GreymilterBinary(t)
	// The binary lives in a directory only root may enter: run a copy.
	copyDir := harness.TempDir(t)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(copyDir, "greymilter")
	if err := os.WriteFile(other, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		name string
		ok   bool
	}{{"nobody", true}, {"postfix", false}} {
		out, err := exec.Command("runuser", "-u", u.name, "--", other, "db", "whitelist", "--db", gm.DB, "--control-socket", gm.DB+".ctl").CombinedOutput()
		if u.ok && (err != nil || !strings.Contains(string(out), "192.0.2.80/32")) {
			t.Errorf("db whitelist as %s: %v\n%s", u.name, err, out)
		}
		if !u.ok && (err == nil || !strings.Contains(string(out), "permission denied")) {
			t.Errorf("db whitelist as %s: %v, want permission denied\n%s", u.name, err, out)
		}
	}
}
