package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

// TestT98PrivacyTwoMXOnePostgreSQL: two greymilter processes (two MX
// hosts) on one PostgreSQL database with --privacy and one secret file
// copied to both: a triplet greylisted at the first passes at the second
// (they agree on keys), the rows hold none of the addresses, and a host
// with another secret is refused at start.
func TestT98PrivacyTwoMXOnePostgreSQL(t *testing.T) {
	t.Parallel()
	harness.Require(t)
	dsn := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "shared.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef-shared-by-both-mx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr1 := pgGreymilter(t, dsn, "--privacy", "--privacy-secret", secret)
	_, addr2 := pgGreymilter(t, dsn, "--privacy", "--privacy-secret", secret)
	p1, p2 := dialPolicyT(t, addr1), dialPolicyT(t, addr2)
	const sender, rcpt = "alice-t98@pg-private.example", "bob-t98@" + harness.Domain
	if a := mustAsk(t, p1, "198.51.100.98", sender, rcpt); !isGreylisted(a) {
		t.Fatalf("first attempt at MX 1: %q, want greylisted", a)
	}
	time.Sleep(delay + 500*time.Millisecond)
	if a := mustAsk(t, p2, "198.51.100.99", sender, rcpt); !passes(a) {
		t.Fatalf("retry at MX 2 after the delay: %q, want a pass", a)
	}

	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var rows string
	if err := c.QueryRow(ctx, `SELECT concat_ws(' ',
		(SELECT string_agg(concat_ws(' ', client, sender, recipient), ' ') FROM triplets),
		(SELECT string_agg(client, ' ') FROM clients),
		(SELECT string_agg(concat_ws(' ', name, value), ' ') FROM meta))`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rows, "privacy hmac-sha256:") {
		t.Fatalf("no privacy mark in the rows: %q", rows)
	}
	for _, word := range []string{"198.51.100", "alice-t98", "pg-private", "bob-t98", harness.Domain} {
		if strings.Contains(rows, word) {
			t.Errorf("the rows hold %q: %s", word, rows)
		}
	}

	other := filepath.Join(dir, "other.secret")
	if err := os.WriteFile(other, []byte("another secret, not the one the database was made with\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := refusedStart(t, "--allow-root", "--db", dsn, "-s", "inet:127.0.0.1:0", "--dns", harness.DeadDNS(t), "--privacy", "--privacy-secret", other)
	if !strings.Contains(msg, "made with another secret") {
		t.Errorf("a host with another secret: %q", msg)
	}
}
