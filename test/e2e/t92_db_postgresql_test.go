package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

// mustDBAt runs dbAt and fails the test unless it exits 0 with want in its
// output.
func mustDBAt(t *testing.T, db string, stdin []byte, want string, args ...string) string {
	t.Helper()
	out, errOut, code := dbAt(t, db, stdin, args...)
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("greymilter db %s --db %s: exit %d, want 0 and %q in the output\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), db, code, want, out, errOut)
	}
	return out
}

// TestT92DBPostgreSQL: the db commands on a PostgreSQL store, straight
// from any host (no control socket by default) and through a daemon's
// --control-socket (what changes that daemon's caches: a deletion, a
// whitelist entry); state moves SQLite -> PostgreSQL -> SQLite by export
// and import, and the PostgreSQL greymilter decides from it.
func TestT92DBPostgreSQL(t *testing.T) {
	t.Parallel()
	harness.Require(t)
	dsn := pgtest.Shared(t).NewDatabase(t)
	ctl := filepath.Join(harness.TempDir(t), "pg.ctl")
	_, addr := pgGreymilter(t, dsn, "--delay", "1h", "--control-socket", ctl)
	p := dialPolicyT(t, addr)

	// Straight on the database: list, pass, delete.
	rcpt := "t92-direct@" + harness.Domain
	if a := mustAsk(t, p, "198.51.100.82", "alice@sender.example", rcpt); !isGreylisted(a) {
		t.Fatalf("first attempt: %q", a)
	}
	out := mustDBAt(t, dsn, nil, "1 triplets", "list", "--pending", "--client", "198.51.100.0/24")
	if !strings.Contains(out, "<"+rcpt+">") {
		t.Errorf("db list on PostgreSQL:\n%s", out)
	}
	if strings.Contains(mustDBAt(t, dsn, nil, "passed 1 triplets in postgres", "pass", "--recipient", rcpt), "password") {
		t.Error("the database's password printed")
	}
	if a := mustAsk(t, p, "198.51.100.82", "alice@sender.example", rcpt); !passes(a) {
		t.Fatalf("after db pass on PostgreSQL: %q", a)
	}
	// A host caches passed triplets (--db-cache-ttl): a deletion goes
	// through its daemon, which forgets its copy at once.
	mustDBAt(t, dsn, nil, "deleted 1 triplets through the running greymilter", "delete", "--recipient", rcpt, "--control-socket", ctl)
	if a := mustAsk(t, p, "198.51.100.82", "alice@sender.example", rcpt); !isGreylisted(a) {
		t.Fatalf("after db delete through the daemon: %q, want a new triplet", a)
	}
	mustDBAt(t, dsn, nil, "deleted 1 triplets in postgres", "delete", "--recipient", rcpt)
	if n := pgCount(t, dsn, "SELECT count(*) FROM triplets"); n != 0 {
		t.Errorf("after db delete on the database: %d triplets", n)
	}

	// Through the daemon: a whitelist entry in force at once.
	wl := "t92-wl@" + harness.Domain
	if a := mustAsk(t, p, "192.0.2.82", "bob@sender.example", wl); !isGreylisted(a) {
		t.Fatalf("before db whitelist: %q", a)
	}
	mustDBAt(t, dsn, nil, "through the running greymilter", "whitelist", "--client", "192.0.2.0/24", "--control-socket", ctl)
	if a := mustAsk(t, p, "192.0.2.82", "bob@sender.example", wl); a != "DUNNO" {
		t.Fatalf("after db whitelist through the daemon: %q, want DUNNO", a)
	}

	// SQLite -> PostgreSQL: a passed triplet, a waiting one, a whitelist
	// entry, imported through the daemon.
	gm, pf := system(t, "--delay", "1h")
	env := harness.Envelope{ClientAddr: "203.0.113.82", From: "carol@sender.example", To: []string{"t92-passed@" + harness.Domain}}
	harness.Send(t, pf.Addr, env)
	mustDB(t, gm, "passed 1", "pass", "--recipient", env.To[0])
	env.To = []string{"t92-waiting@" + harness.Domain}
	harness.Send(t, pf.Addr, env)
	mustDB(t, gm, "whitelisted", "whitelist", "--client", "2001:db8:82::/48")
	fromSQLite := mustDB(t, gm, `"type":"triplet"`, "export")
	mustDBAt(t, dsn, []byte(fromSQLite), "imported 2 triplets, 0 clients, 1 whitelist entries through the running greymilter", "import", "--control-socket", ctl)
	if a := mustAsk(t, p, "203.0.113.82", "carol@sender.example", "t92-passed@"+harness.Domain); a != "DUNNO" {
		t.Errorf("SQLite's passed triplet at the PostgreSQL greymilter: %q, want DUNNO", a)
	}
	if a := mustAsk(t, p, "203.0.113.82", "carol@sender.example", "t92-waiting@"+harness.Domain); !isGreylisted(a) {
		t.Errorf("SQLite's waiting triplet at the PostgreSQL greymilter: %q", a)
	}
	if a := mustAsk(t, p, "2001:db8:82::1", "dave@sender.example", "t92-v6@"+harness.Domain); a != "DUNNO" {
		t.Errorf("SQLite's whitelist entry at the PostgreSQL greymilter: %q, want DUNNO", a)
	}

	// SQLite -> PostgreSQL straight, then back into a new SQLite file:
	// the same lines come out.
	dsn2 := pgtest.Shared(t).NewDatabase(t)
	mustDBAt(t, dsn2, nil, "0 triplets", "list") // creates the schema
	mustDBAt(t, dsn2, []byte(fromSQLite), "imported 2 triplets", "import")
	fromPG := mustDBAt(t, dsn2, nil, `"type":"triplet"`, "export")
	if !sameLines(fromPG, fromSQLite) {
		t.Errorf("PostgreSQL's export of SQLite's:\n%s\nwant:\n%s", fromPG, fromSQLite)
	}
	back := harness.Greymilter(t, "--delay", "1h")
	if err := back.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := gmDBInput(t, back, []byte(fromPG), "import"); code != 0 || !strings.Contains(out, "imported 2 triplets") {
		t.Fatalf("import of PostgreSQL's export into SQLite: exit %d\n%s%s", code, out, errOut)
	}
	if again, _, _ := gmDB(t, back, "export"); !sameLines(again, fromSQLite) {
		t.Errorf("SQLite -> PostgreSQL -> SQLite:\n%s\nwant:\n%s", again, fromSQLite)
	}
}
