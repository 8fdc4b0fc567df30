package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/greymilter/greymilter/test/harness"
)

// policyAsk sends one policy request to addr and returns the action.
func policyAsk(t *testing.T, addr, client, sender, rcpt string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("policy %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=unknown\nhelo_name=mx.example\nsender=%s\nrecipient=%s\n\n", client, sender, rcpt)
	sc := bufio.NewScanner(c)
	action := ""
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			return action
		}
		if a, ok := strings.CutPrefix(line, "action="); ok {
			action = a
		}
	}
	t.Fatalf("policy %s: no answer: %v", addr, sc.Err())
	return ""
}

// TestT81ImportPostgrey: the real postgrey greylists two triplets, one of
// which passes after its delay; its database, once postgrey stopped, is
// imported into a running greymilter through its control socket: the
// passed triplet passes at once as known, the waiting one keeps its first
// sighting, and postgrey's client auto-whitelist comes over as passes.
func TestT81ImportPostgrey(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postgrey", "db_dump", "postfix")
	pgUser, err := user.Lookup("postgrey")
	if err != nil {
		t.Fatalf("postgrey's user: %v", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	dir := harness.TempDir(t)
	dbdir := filepath.Join(dir, "postgrey")
	if err := os.Mkdir(dbdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dbdir, uid, gid); err != nil {
		t.Fatal(err)
	}
	port := harness.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pg := exec.CommandContext(ctx, "/usr/sbin/postgrey", "--inet="+addr, "--dbdir="+dbdir, "--delay=1",
		"--auto-whitelist-clients=1", "--user=postgrey", "--group=postgrey")
	logPath := filepath.Join(dir, "postgrey.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	pg.Stdout, pg.Stderr = logf, logf
	if err := pg.Start(); err != nil {
		t.Fatalf("postgrey: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			pg.Process.Kill()
			pg.Wait()
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("postgrey does not listen on %s:\n%s", addr, log)
		}
		time.Sleep(100 * time.Millisecond)
	}

	passedRcpt, waitingRcpt := "t81-passed@"+harness.Domain, "t81-waiting@"+harness.Domain
	if a := policyAsk(t, addr, "198.51.100.71", "alice@sender.example", passedRcpt); !strings.HasPrefix(a, "DEFER_IF_PERMIT") {
		t.Fatalf("postgrey, first attempt: %q", a)
	}
	if a := policyAsk(t, addr, "192.0.2.71", "bob@sender.example", waitingRcpt); !strings.HasPrefix(a, "DEFER_IF_PERMIT") {
		t.Fatalf("postgrey, other triplet: %q", a)
	}
	time.Sleep(2200 * time.Millisecond) // postgrey counts whole seconds
	if a := policyAsk(t, addr, "198.51.100.71", "alice@sender.example", passedRcpt); strings.HasPrefix(a, "DEFER") {
		t.Fatalf("postgrey, retry after its delay: %q", a)
	}
	pg.Process.Signal(os.Interrupt)
	waited := make(chan error, 1)
	go func() { waited <- pg.Wait() }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("postgrey did not stop within 10s")
	}
	stopped = true

	gm, pf := system(t, "--delay", "1h")
	out, errOut, code := gmDB(t, gm, "import-postgrey", dbdir, "--delay", "1s")
	if code != 0 || !strings.Contains(out, "imported 2 triplets, 1 clients, 0 whitelist entries through the running greymilter") ||
		!strings.Contains(errOut, "read from postgrey: 2 triplets (1 passed), 1 clients") {
		t.Fatalf("import-postgrey: exit %d\n%s%s", code, out, errOut)
	}
	ts := listed(t, gm, "--passed")
	if len(ts) != 1 || ts[0]["client"] != "198.51.100.0/24" || ts[0]["recipient"] != passedRcpt {
		t.Fatalf("passed triplets after the import: %v", ts)
	}
	env := harness.Envelope{ClientAddr: "198.51.100.71", From: "alice@sender.example", To: []string{passedRcpt}}
	accepted(t, "postgrey's passed triplet", harness.Send(t, pf.Addr, env).Rcpt[0])
	decision(t, gm, passedRcpt, 1, "pass", "known")
	env = harness.Envelope{ClientAddr: "192.0.2.71", From: "bob@sender.example", To: []string{waitingRcpt}}
	if r := harness.Send(t, pf.Addr, env).Rcpt[0]; r.Code != 451 {
		t.Fatalf("postgrey's waiting triplet: %v", r)
	}
	decision(t, gm, waitingRcpt, 1, "greylist", "early-retry")
	exp := mustDB(t, gm, `"type":"client"`, "export")
	found := false
	for _, line := range strings.Split(exp, "\n") {
		found = found || strings.Contains(line, `"type":"client","client":"198.51.100.0/24"`) && regexp.MustCompile(`"passes":1[,}]`).MatchString(line)
	}
	if !found {
		t.Errorf("postgrey's auto-whitelisted client not imported:\n%s", exp)
	}
}

// TestT81ImportSQLgrey: an sqlgrey database in SQLite, with sqlgrey's own
// tables (the CREATE statements of sqlgrey 1.8) and rows as sqlgrey writes
// them (now() is unix seconds in its SQLite), imported into a stopped
// greymilter's file: connect rows become waiting triplets, a domain_awl
// entry makes its client auto-whitelisted.
func TestT81ImportSQLgrey(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix")
	path := filepath.Join(t.TempDir(), "sqlgrey.db")
	now := time.Now().Unix()
	script := fmt.Sprintf(`
CREATE TABLE from_awl (sender_name varchar(64) NOT NULL, sender_domain varchar(255) NOT NULL, src varchar(39) NOT NULL, first_seen timestamp NOT NULL, last_seen timestamp NOT NULL, PRIMARY KEY (src, sender_domain, sender_name));
CREATE TABLE domain_awl (sender_domain varchar(255) NOT NULL, src varchar(39) NOT NULL, first_seen timestamp NOT NULL, last_seen timestamp NOT NULL, PRIMARY KEY (src, sender_domain));
CREATE TABLE connect (sender_name varchar(64) NOT NULL, sender_domain varchar(255) NOT NULL, src varchar(39) NOT NULL, rcpt varchar(255) NOT NULL, first_seen timestamp NOT NULL);
INSERT INTO connect VALUES ('carol', 'sender.example', '198.51.100', 't81s-waiting@%[2]s', %[1]d);
INSERT INTO connect VALUES ('dave', 'sender.example', '192.0.2.9', 't81s-other@%[2]s', %[1]d);
INSERT INTO from_awl VALUES ('erin', 'sender.example', '203.0.113', %[1]d, %[1]d);
INSERT INTO domain_awl VALUES ('partner.example', '203.0.113', %[1]d, %[1]d);
`, now-60, harness.Domain)
	sq := exec.Command("sqlite3", path)
	sq.Stdin = strings.NewReader(script)
	if out, err := sq.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}

	gm := harness.Greymilter(t, "--delay", "1h")
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := gmDB(t, gm, "import-sqlgrey", "sqlite:"+path)
	if code != 0 || !strings.Contains(out, "imported 2 triplets, 1 clients") || !strings.Contains(out, "in "+gm.DB) {
		t.Fatalf("import-sqlgrey: exit %d\n%s%s", code, out, errOut)
	}
	gm.Restart()
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	env := harness.Envelope{ClientAddr: "198.51.100.5", From: "carol@sender.example", To: []string{"t81s-waiting@" + harness.Domain}}
	if r := harness.Send(t, pf.Addr, env).Rcpt[0]; r.Code != 451 {
		t.Fatalf("sqlgrey's waiting triplet: %v", r)
	}
	decision(t, gm, env.To[0], 1, "greylist", "early-retry")
	env = harness.Envelope{ClientAddr: "203.0.113.77", From: "someone@partner.example", To: []string{"t81s-awl@" + harness.Domain}}
	accepted(t, "sqlgrey's auto-whitelisted client", harness.Send(t, pf.Addr, env).Rcpt[0])
	decision(t, gm, env.To[0], 1, "pass", "auto-whitelist")
}
