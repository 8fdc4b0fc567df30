package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// TestDBPrivateWithoutDaemon: with no daemon, `greymilter db --privacy`
// opens a private SQLite database as the daemon does, so that what the
// admin types is hashed with the secret beside it: list and delete find
// the triplet, and list --slow-retriers shows hashes, found by name.
// Without --privacy the private database is refused, saying why.
func TestDBPrivateWithoutDaemon(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "g.db")
	raw, keyed, err := openStore(ctx, testConfig(t, "--db", file, "--privacy"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	key := greylist.Key{Client: "192.0.2.0/24", Sender: "alice@slow.example", Recipient: "bob@example.net"}
	if _, err := keyed.Attempt(ctx, key, greylist.DefaultRules, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, p := greylist.Unwrap(keyed)
	if err := raw.(greylist.SlowRetryStore).NoteSlowRetry(ctx, p.Domain("slow.example"), p.Client("192.0.2.0/24"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	db := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := runDB(append(args, "--db", file, "--control-socket", "none"), &out, &errOut)
		return out.String(), errOut.String(), code
	}
	if out, errOut, code := db("list", "--client", "192.0.2.7"); code != exitUsage || !strings.Contains(errOut, "--privacy is off") {
		t.Errorf("list without --privacy: exit %d, want %d and a refusal\n%s%s", code, exitUsage, out, errOut)
	}
	if out, errOut, code := db("list", "--privacy", "--client", "192.0.2.7", "--sender", key.Sender); code != 0 || !strings.Contains(out, "1 triplets") || strings.Contains(out, "192.0.2") {
		t.Errorf("list --privacy: exit %d, want the hashed triplet\n%s%s", code, out, errOut)
	}
	out, errOut, code := db("list", "--slow-retriers", "--privacy", "--domain", "Slow.Example")
	if code != 0 || !strings.Contains(out, "DOMAIN (HMAC") || !strings.Contains(out, p.Domain("slow.example")) || !strings.Contains(out, "1 domains") {
		t.Errorf("list --slow-retriers --privacy --domain Slow.Example: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := db("delete", "--privacy", "--client", "192.0.2.7"); code != 0 || !strings.Contains(out, "deleted 1 triplets") {
		t.Errorf("delete --privacy: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ := db("list", "--privacy"); !strings.Contains(out, "0 triplets") {
		t.Errorf("after delete:\n%s", out)
	}
}

// TestDBPrivacyOnPlainDatabase: `greymilter db --privacy` on a database
// that is not private is refused, and makes it neither private nor writes
// a secret: the daemon without --privacy would then refuse to start.
func TestDBPrivacyOnPlainDatabase(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "g.db")
	raw, _, err := openStore(ctx, testConfig(t, "--db", file), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	raw.Close()
	var out, errOut bytes.Buffer
	if code := runDB([]string{"list", "--privacy", "--db", file, "--control-socket", "none"}, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), "is not private") {
		t.Errorf("db list --privacy on a plain database: exit %d, want %d and a refusal\n%s%s", code, exitUsage, out.String(), errOut.String())
	}
	if _, err := os.Stat(file + ".secret"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a secret file was written: %v", err)
	}
	if code := runDB([]string{"list", "--db", file, "--control-socket", "none"}, &out, &errOut); code != 0 {
		t.Errorf("db list without --privacy afterwards: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
