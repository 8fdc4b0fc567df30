package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT96PrivacyDBStopped: with greymilter --privacy stopped, `greymilter
// db` opens the database as the daemon does, given --privacy or the
// daemon's config file: what the admin types is hashed with the secret
// beside the database, so list finds the triplet and delete removes it,
// and after a restart its next attempt is new again. Without --privacy,
// db refuses and says what to give, instead of finding nothing.
func TestT96PrivacyDBStopped(t *testing.T) {
	t.Parallel()
	gm, pf := system(t, "--privacy")
	env := harness.Envelope{ClientAddr: "192.0.2.83", ClientName: "mail.private-db.example", Helo: "mail.private-db.example",
		From: "carol-t96@private-db.example", To: []string{"dave-t96@" + harness.Domain}}
	sleepFor(greylisted(t, "first attempt", harness.Send(t, pf.Addr, env).Rcpt[0]))
	accepted(t, "after the delay", harness.Send(t, pf.Addr, env).Rcpt[0])
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	filter := []string{"--client", env.ClientAddr, "--sender", env.From, "--recipient", env.To[0]}

	out, errOut, code := gmDB(t, gm, append([]string{"list"}, filter...)...)
	if code == 0 || !strings.Contains(errOut, "--privacy is off") || !strings.Contains(errOut, "--privacy-secret") {
		t.Errorf("db list without --privacy on a private database: exit %d, want a refusal naming --privacy\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	ts := listed(t, gm, append([]string{"--privacy"}, filter...)...)
	if len(ts) != 1 || ts[0]["passed_at"] == nil {
		t.Fatalf("db list --privacy: %v, want the passed triplet", ts)
	}
	if c, _ := ts[0]["client"].(string); strings.Contains(c, "192.0.2") {
		t.Errorf("db list --privacy shows client %q: want its hash, as stored", c)
	}
	// The daemon's config file gives --privacy just as well.
	conf := filepath.Join(t.TempDir(), "greymilter.conf")
	if err := os.WriteFile(conf, []byte("privacy = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ts := listed(t, gm, append([]string{"--config", conf}, filter...)...); len(ts) != 1 {
		t.Fatalf("db list --config (privacy = true): %v, want the triplet", ts)
	}

	mustDB(t, gm, "deleted 1 triplets in "+gm.DB, append([]string{"delete", "--yes", "--privacy"}, filter...)...)
	if ts := listed(t, gm, append([]string{"--privacy"}, filter...)...); len(ts) != 0 {
		t.Fatalf("after db delete: %v, want nothing", ts)
	}
	gm.Restart()
	greylisted(t, "after db delete and a restart: a new triplet", harness.Send(t, pf.Addr, env).Rcpt[0])
}
