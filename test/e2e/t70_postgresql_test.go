package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
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

// policyClient speaks Postfix's policy protocol on one connection.
type policyClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialPolicy(t *testing.T, addr string) *policyClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &policyClient{c: c, r: bufio.NewReader(c)}
}

// ask sends one RCPT request and returns the action answered and how long
// the answer took.
func (p *policyClient) ask(client, sender, rcpt string) (string, time.Duration, error) {
	start := time.Now()
	p.c.SetDeadline(start.Add(10 * time.Second))
	req := fmt.Sprintf("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=unknown\nhelo_name=mail.sender.example\nsender=%s\nrecipient=%s\ninstance=%d\n\n",
		client, sender, rcpt, start.UnixNano())
	if _, err := p.c.Write([]byte(req)); err != nil {
		return "", 0, err
	}
	var action string
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			return "", 0, err
		}
		line = strings.TrimRight(line, "\n")
		if line == "" {
			return action, time.Since(start), nil
		}
		action = strings.TrimPrefix(line, "action=")
	}
}

func (p *policyClient) mustAsk(t *testing.T, client, sender, rcpt string) string {
	t.Helper()
	action, _, err := p.ask(client, sender, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	return action
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

// TestT70TwoGreymiltersOnePostgreSQL: two greymilter processes (two MX
// hosts) on one database. A triplet greylisted through the first passes
// through the second after the delay; hundreds of new triplets sent to
// both at the same instant are all deferred by both, without error, and
// each is one row.
func TestT70TwoGreymiltersOnePostgreSQL(t *testing.T) {
	t.Parallel()
	harness.Require(t)
	dsn := pgtest.Shared(t).NewDatabase(t)
	_, addr1 := pgGreymilter(t, dsn)
	_, addr2 := pgGreymilter(t, dsn)

	p1, p2 := dialPolicy(t, addr1), dialPolicy(t, addr2)
	if a := p1.mustAsk(t, "198.51.100.60", "alice@sender.example", "bob-t70@"+harness.Domain); !isGreylisted(a) {
		t.Fatalf("first attempt at MX 1: %q, want greylisted", a)
	}
	time.Sleep(delay + 500*time.Millisecond)
	a := p2.mustAsk(t, "198.51.100.61", "alice@sender.example", "bob-t70@"+harness.Domain)
	if !strings.HasPrefix(a, "PREPEND X-Greylist: delayed 3 seconds by greymilter at "+hostname) {
		t.Fatalf("retry at MX 2 after the delay: %q, want a pass with X-Greylist", a)
	}

	const triplets, conns = 300, 8
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 2*triplets)
	for _, addr := range []string{addr1, addr2} {
		for w := range conns {
			p := dialPolicy(t, addr)
			wg.Go(func() {
				<-start
				for i := w; i < triplets; i += conns {
					a, _, err := p.ask(fmt.Sprintf("203.0.%d.7", i%200), fmt.Sprintf("s%d@sender.example", i), "same-t70@"+harness.Domain)
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
	if n := pgCount(t, dsn, `SELECT count(*) FROM triplets WHERE recipient = 'same-t70@`+harness.Domain+`'`); n != triplets {
		t.Errorf("%d rows for %d triplets, want one each", n, triplets)
	}
	if n := pgCount(t, dsn, `SELECT count(*) FROM triplets WHERE recipient = 'same-t70@`+harness.Domain+`' AND attempts != 2`); n != 0 {
		t.Errorf("%d triplets without both attempts counted", n)
	}
}
