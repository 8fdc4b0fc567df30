package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// TestT96Privacy runs mail through the real binary and Postfix with
// --privacy: the SQLite files then hold none of the addresses used, the
// secret beside the database is mode 0600, a second host given the same
// secret in $GREYMILTER_PRIVACY_SECRET agrees on the keys (the triplet is
// known), and starts that would mix keys or lost the secret are refused
// with a clear message until --privacy-migrate empties the database.
func TestT96Privacy(t *testing.T) {
	t.Parallel()
	gm, pf := system(t, "--privacy")
	secretFile := gm.DB + ".secret"
	env := harness.Envelope{ClientAddr: "192.0.2.81", ClientName: "mail.private-sender.example", Helo: "mail.private-sender.example",
		From: "alice-t96@private-sender.example", To: []string{"bob-t96@" + harness.Domain}}
	sleepFor(greylisted(t, "first attempt", harness.Send(t, pf.Addr, env).Rcpt[0]))
	accepted(t, "after the delay", harness.Send(t, pf.Addr, env).Rcpt[0])
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(secretFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file %s: %v %v, want mode 0600", secretFile, fi, err)
	}
	addresses := []string{"192.0.2", "alice-t96", "private-sender", "bob-t96", harness.Domain}
	noneIn(t, gm.DB, addresses)

	// Another host with the secret in its environment, not the file.
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	hidden := secretFile + ".elsewhere"
	if err := os.Rename(secretFile, hidden); err != nil {
		t.Fatal(err)
	}
	gm.Env = []string{"GREYMILTER_PRIVACY_SECRET=" + strings.TrimSpace(string(secret))}
	gm.Restart()
	accepted(t, "known triplet, secret from the environment", harness.Send(t, pf.Addr, env).Rcpt[0])
	decision(t, gm, env.To[0], 3, "pass", "known")
	if err := gm.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(secretFile); err == nil {
		t.Error("a secret file was written though the secret came from the environment")
	}

	// The secret file lost: refused, saying so.
	base := []string{"--allow-root", "--db", gm.DB, "-s", "inet:127.0.0.1:0", "--dns", harness.DeadDNS(t)}
	msg := refusedStart(t, append(base, "--privacy")...)
	if !strings.Contains(msg, "private but its secret "+secretFile+" is missing") {
		t.Errorf("missing secret: %q", msg)
	}
	// Plain keys on the private database: refused.
	if msg := refusedStart(t, base...); !strings.Contains(msg, "--privacy is off") || !strings.Contains(msg, "--privacy-migrate") {
		t.Errorf("plain keys on a private database: %q", msg)
	}

	// A plain database that holds mail: --privacy is refused, then
	// --privacy-migrate empties it and greylisting starts over.
	plain, pf2 := system(t)
	sleepFor(greylisted(t, "plain: first attempt", harness.Send(t, pf2.Addr, env).Rcpt[0]))
	accepted(t, "plain: after the delay", harness.Send(t, pf2.Addr, env).Rcpt[0])
	if err := plain.Stop(); err != nil {
		t.Fatal(err)
	}
	base[2] = plain.DB
	if msg := refusedStart(t, append(base, "--privacy")...); !strings.Contains(msg, "holds plain addresses and --privacy is on") {
		t.Errorf("--privacy on a plain database: %q", msg)
	}
	plain.Args = append(plain.Args, "--privacy", "--privacy-migrate")
	plain.Restart()
	if !strings.Contains(plain.Log(), "database emptied") {
		t.Error("the migration is not logged")
	}
	greylisted(t, "after --privacy-migrate", harness.Send(t, pf2.Addr, env).Rcpt[0])
	if err := plain.Stop(); err != nil {
		t.Fatal(err)
	}
	noneIn(t, plain.DB, addresses) // the plain rows were erased for good
}

// noneIn checks that the SQLite files of db (with its WAL) hold none of
// words.
func noneIn(t *testing.T, db string, words []string) {
	t.Helper()
	files, _ := filepath.Glob(db + "*")
	var all []byte
	for _, f := range files {
		if strings.HasSuffix(f, ".secret") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if !bytes.Contains(all, []byte("CREATE TABLE triplets")) {
		t.Fatalf("read no database from %v", files)
	}
	for _, w := range words {
		if bytes.Contains(all, []byte(w)) {
			t.Errorf("%s holds %q", db, w)
		}
	}
}

// refusedStart runs greymilter with args, which must make it refuse to
// start with exit status 2; it returns what it wrote.
func refusedStart(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(harness.GreymilterBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v: still running after 20s, want a refusal", args)
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("%v: exit %d, want 2: %s", args, code, out.String())
	}
	return out.String()
}
