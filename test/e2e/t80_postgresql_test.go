package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

// pgGreymilter starts greymilter on the PostgreSQL database dsn with its
// policy server on a free port, and returns it with that port's address.
func pgGreymilter(t *testing.T, dsn string, args ...string) (*harness.GreymilterProcess, string) {
	t.Helper()
	gm := harness.Greymilter(t, append([]string{"--db", dsn, "--policy-socket", "inet:127.0.0.1:0",
		"--delay", delay.String(), "--hostname", hostname, "--auto-whitelist-clients", "0"}, args...)...)
	return gm, gm.PolicyAddr()
}

// dialPolicyT connects to a policy server (dialPolicy, T33) for the
// test's duration.
func dialPolicyT(t *testing.T, addr string) *policyConn {
	t.Helper()
	p := dialPolicy(t, addr)
	t.Cleanup(func() { p.Close() })
	return p
}

// timedAsk asks p and says how long the answer took.
func timedAsk(p *policyConn, client, sender, rcpt string) (string, time.Duration, error) {
	start := time.Now()
	a, err := p.ask(client, sender, rcpt)
	return a, time.Since(start), err
}

func mustAsk(t *testing.T, p *policyConn, client, sender, rcpt string) string {
	t.Helper()
	a, err := p.ask(client, sender, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func isGreylisted(action string) bool {
	return strings.HasPrefix(action, "DEFER_IF_PERMIT 4.7.1 Greylisted")
}

// passes tells whether an action lets the recipient through (DUNNO, or the
// X-Greylist header of a first pass).
func passes(action string) bool {
	return action == "DUNNO" || strings.HasPrefix(action, "PREPEND X-Greylist:")
}

// pgCount runs a counting query on dsn.
func pgCount(t *testing.T, dsn, query string) int64 {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int64
	if err := c.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestT80TwoGreymiltersOnePostgreSQL: two greymilter processes (two MX
// hosts) on one database. A triplet greylisted through the first passes
// through the second after the delay; hundreds of new triplets sent to
// both at the same instant are all deferred by both, without error, and
// each is one row.
func TestT80TwoGreymiltersOnePostgreSQL(t *testing.T) {
	t.Parallel()
	harness.Require(t)
	dsn := pgtest.Shared(t).NewDatabase(t)
	_, addr1 := pgGreymilter(t, dsn)
	_, addr2 := pgGreymilter(t, dsn)

	p1, p2 := dialPolicyT(t, addr1), dialPolicyT(t, addr2)
	if a := mustAsk(t, p1, "198.51.100.60", "alice@sender.example", "bob-t80@"+harness.Domain); !isGreylisted(a) {
		t.Fatalf("first attempt at MX 1: %q, want greylisted", a)
	}
	time.Sleep(delay + 500*time.Millisecond)
	a := mustAsk(t, p2, "198.51.100.61", "alice@sender.example", "bob-t80@"+harness.Domain)
	if !strings.HasPrefix(a, "PREPEND X-Greylist: delayed 3 seconds by greymilter at "+hostname) {
		t.Fatalf("retry at MX 2 after the delay: %q, want a pass with X-Greylist", a)
	}

	const triplets, conns = 300, 8
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 2*triplets)
	for _, addr := range []string{addr1, addr2} {
		for w := range conns {
			p := dialPolicyT(t, addr)
			wg.Go(func() {
				<-start
				for i := w; i < triplets; i += conns {
					a, err := p.ask(fmt.Sprintf("203.0.%d.7", i%200), fmt.Sprintf("s%d@sender.example", i), "same-t80@"+harness.Domain)
					switch {
					case err != nil:
						errs <- err.Error()
					case !isGreylisted(a):
						errs <- fmt.Sprintf("triplet %d at %s: %q, want greylisted", i, addr, a)
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := pgCount(t, dsn, `SELECT count(*) FROM triplets WHERE recipient = 'same-t80@`+harness.Domain+`'`); n != triplets {
		t.Errorf("%d rows for %d triplets, want one each", n, triplets)
	}
	if n := pgCount(t, dsn, `SELECT count(*) FROM triplets WHERE recipient = 'same-t80@`+harness.Domain+`' AND attempts != 2`); n != 0 {
		t.Errorf("%d triplets without both attempts counted", n)
	}
}
