package e2e

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

// policyAsk sends one policy request to addr on a connection of its own
// (dialPolicy, T33) and returns the action.
func policyAsk(t *testing.T, addr, client, sender, rcpt string) string {
	t.Helper()
	p := dialPolicy(t, addr)
	defer p.Close()
	a, err := p.ask(client, sender, rcpt)
	if err != nil {
		t.Fatalf("policy %s: %v", addr, err)
	}
	return a
}

// TestT91ImportPostgrey: the real postgrey greylists two triplets, one of
// which passes after its delay; its database, once postgrey stopped, is
// imported into a running greymilter through its control socket: the
// passed triplet passes at once as known, the waiting one keeps its first
// sighting, and postgrey's client auto-whitelist comes over as passes.
func TestT91ImportPostgrey(t *testing.T) {
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
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreePort(t)))
	stop := startPeer(t, dir, addr, exec.Command("/usr/sbin/postgrey", "--inet="+addr, "--dbdir="+dbdir, "--delay=1",
		"--auto-whitelist-clients=1", "--user=postgrey", "--group=postgrey"))

	passedRcpt, waitingRcpt := "t91-passed@"+harness.Domain, "t91-waiting@"+harness.Domain
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
	stop()

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

// startPeer starts another greylisting daemon (postgrey, sqlgrey) as
// cmd, logging to dir, and waits until it listens on addr. stop ends it
// with SIGTERM.
func startPeer(t *testing.T, dir, addr string, cmd *exec.Cmd) (stop func()) {
	t.Helper()
	name := filepath.Base(cmd.Path)
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("%s: %v", name, err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(waited) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		// Both peers run Net::Server::Multiplex, whose IO::Multiplex loop
		// restarts an interrupted select without looking at the signal
		// flag: SIGTERM is acted on only at the next socket event. A
		// connection now and then is that event.
		poke := time.NewTicker(200 * time.Millisecond)
		defer poke.Stop()
		giveUp := time.After(30 * time.Second)
		for {
			select {
			case <-waited:
				return
			case <-poke.C:
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
				}
			case <-giveUp:
				cmd.Process.Kill()
				<-waited
				t.Errorf("%s did not stop within 30s of SIGTERM", name)
				return
			}
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return stop
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("%s does not listen on %s:\n%s", name, addr, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestT91ImportSQLgrey: the real sqlgrey (Debian's package, on an SQLite
// database) greylists a triplet that never comes back, and passes two
// senders of one domain from one class C network after their retry, which
// it turns into a domain auto-whitelist entry; its database, imported into
// a stopped greymilter's file, makes the waiting triplet an early retry and
// the network auto-whitelisted at greymilter.
func TestT91ImportSQLgrey(t *testing.T) {
	t.Parallel()
	harness.Require(t, "sqlgrey", "postfix")
	dir := harness.TempDir(t)
	db := filepath.Join(dir, "sqlgrey.db")
	runSQLgrey(t, dir, "db_type = SQLite\ndb_name = "+db+"\n")
	checkSQLgreyImport(t, "sqlite:"+db)
}

// runSQLgrey runs the real sqlgrey with its database as dbConf says, in
// dir (made sqlgrey's), and has it greylist the T91 triplets: one waiting,
// two passed senders of one domain from one class C network, which sqlgrey
// turns into a domain auto-whitelist entry. It returns once sqlgrey
// stopped.
func runSQLgrey(t *testing.T, dir, dbConf string) {
	t.Helper()
	sg, err := user.Lookup("sqlgrey")
	if err != nil {
		t.Fatalf("sqlgrey's user: %v", err)
	}
	uid, _ := strconv.Atoi(sg.Uid)
	gid, _ := strconv.Atoi(sg.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreePort(t)))
	conf := filepath.Join(dir, "sqlgrey.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("loglevel = 2\ninet = %s\nuser = sqlgrey\ngroup = sqlgrey\n%sreconnect_delay = 0\ngroup_domain_level = 2\ngreymethod = classc\n", addr, dbConf)), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := startPeer(t, dir, addr, exec.Command("/usr/sbin/sqlgrey", "-f", conf))
	ask := func(client, sender, rcpt string, pass bool) {
		t.Helper()
		a := policyAsk(t, addr, client, sender, rcpt)
		if strings.HasPrefix(strings.ToLower(a), "defer") == pass {
			t.Fatalf("sqlgrey: %s <%s> <%s>: %q", client, sender, rcpt, a)
		}
	}
	ask("192.0.2.81", "carol@sender.example", "t91s-waiting@"+harness.Domain, false)
	ask("198.51.100.81", "erin@partner.example", "t91s-1@"+harness.Domain, false)
	ask("198.51.100.81", "frank@partner.example", "t91s-2@"+harness.Domain, false)
	time.Sleep(2 * time.Second) // sqlgrey's delay counts in whole minutes from 0
	ask("198.51.100.81", "erin@partner.example", "t91s-1@"+harness.Domain, true)
	ask("198.51.100.81", "frank@partner.example", "t91s-2@"+harness.Domain, true)
	stop()
}

// checkSQLgreyImport imports what runSQLgrey left at dsn into a stopped
// greymilter's file and checks greymilter's next decisions through Postfix.
func checkSQLgreyImport(t *testing.T, dsn string) {
	t.Helper()
	gm := harness.Greymilter(t, "--delay", "1h")
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := gmDB(t, gm, "import-sqlgrey", dsn)
	if code != 0 || !strings.Contains(out, "imported 1 triplets, 1 clients") || !strings.Contains(out, "in "+gm.DB) {
		t.Fatalf("import-sqlgrey: exit %d\n%s%s", code, out, errOut)
	}
	gm.Restart()
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	waiting := "t91s-waiting@" + harness.Domain
	env := harness.Envelope{ClientAddr: "192.0.2.5", From: "carol@sender.example", To: []string{waiting}}
	if r := harness.Send(t, pf.Addr, env).Rcpt[0]; r.Code != 451 {
		t.Fatalf("sqlgrey's waiting triplet: %v", r)
	}
	decision(t, gm, waiting, 1, "greylist", "early-retry")
	env = harness.Envelope{ClientAddr: "198.51.100.77", From: "someone@elsewhere.example", To: []string{"t91s-awl@" + harness.Domain}}
	accepted(t, "sqlgrey's auto-whitelisted network", harness.Send(t, pf.Addr, env).Rcpt[0])
	decision(t, gm, env.To[0], 1, "pass", "auto-whitelist")
}

// TestT91ImportSQLgreyPostgreSQL: the same with sqlgrey on PostgreSQL, its
// usual database, read through a postgres:// URL.
func TestT91ImportSQLgreyPostgreSQL(t *testing.T) {
	t.Parallel()
	harness.Require(t, "sqlgrey", "postfix")
	dsn := pgtest.Shared(t).NewDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	runSQLgrey(t, harness.TempDir(t), fmt.Sprintf("db_type = Pg\ndb_name = %s\ndb_host = %s\ndb_port = %s\ndb_user = %s\n",
		strings.TrimPrefix(u.Path, "/"), u.Hostname(), u.Port(), u.User.Username()))
	checkSQLgreyImport(t, dsn)
}
