package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greymilter/greymilter/internal/pgtest"
	"github.com/greymilter/greymilter/test/harness"
)

// dbTimeout is greymilter's --db-timeout in the outage tests.
const dbTimeout = 500 * time.Millisecond

// TestT81PostgreSQLOutages: PostgreSQL stopped mid-run, then hung (SIGSTOP
// of the postmaster and its children). Two greymilters, one with
// --on-error tempfail (the default) and one with accept, answer every
// request within --db-timeout and a margin, as --on-error says; a triplet
// that passed before still passes from the cache; each says "database
// unavailable" once per outage. After the server's return decisions
// resume within a second, without restarting greymilter, and what was
// committed before the outage is still there.
func TestT81PostgreSQLOutages(t *testing.T) {
	t.Parallel()
	harness.Require(t)
	srv := pgtest.New(t)
	dsn := srv.NewDatabase(t)
	timeout := "--db-timeout=" + dbTimeout.String()
	tempfail, tempfailAddr := pgGreymilter(t, dsn, timeout)
	accept, acceptAddr := pgGreymilter(t, dsn, timeout, "--on-error", "accept")
	rcpt := "bob-t81@" + harness.Domain

	// Before: one triplet passed (and cached at both), one waiting.
	p := dialPolicyT(t, tempfailAddr)
	pa := dialPolicyT(t, acceptAddr)
	mustAsk(t, p, "198.51.100.1", "known@sender.example", rcpt)
	waitingFirst := time.Now()
	mustAsk(t, p, "198.51.100.2", "waiting@sender.example", rcpt)
	time.Sleep(delay + 500*time.Millisecond)
	for _, c := range []*policyConn{p, pa} {
		if a := mustAsk(t, c, "198.51.100.1", "known@sender.example", rcpt); !passes(a) {
			t.Fatalf("retry after the delay: %q, want a pass", a)
		}
	}

	outages := []struct {
		name       string
		start, end func() error
	}{
		{"stopped", srv.Stop, srv.Start},
		{"hung", srv.Freeze, srv.Thaw},
	}
	seq := 0
	for i, o := range outages {
		if err := o.start(); err != nil {
			t.Fatal(err)
		}
		// Concurrent new triplets at both, more than a pool holds.
		type answer struct {
			gm     string
			action string
			took   time.Duration
			err    error
		}
		var wg sync.WaitGroup
		answers := make(chan answer, 64)
		for w := range 32 {
			gm, addr := "tempfail", tempfailAddr
			if w%2 == 1 {
				gm, addr = "accept", acceptAddr
			}
			c := dialPolicyT(t, addr)
			seq++
			sender := fmt.Sprintf("o%d@sender.example", seq)
			wg.Go(func() {
				for range 2 {
					a, took, err := timedAsk(c, "203.0.113.9", sender, rcpt)
					answers <- answer{gm, a, took, err}
				}
			})
		}
		wg.Wait()
		close(answers)
		var worst time.Duration
		for a := range answers {
			worst = max(worst, a.took)
			want := "DEFER_IF_PERMIT 4.3.0"
			if a.gm == "accept" {
				want = "DUNNO"
			}
			if a.err != nil || !strings.HasPrefix(a.action, want) {
				t.Errorf("PostgreSQL %s: %s greymilter answered %q (%v), want %s", o.name, a.gm, a.action, a.err, want)
			}
		}
		t.Logf("PostgreSQL %s: worst answer %v (--db-timeout %v)", o.name, worst.Round(time.Millisecond), dbTimeout)
		if limit := dbTimeout + 700*time.Millisecond; worst > limit {
			t.Errorf("PostgreSQL %s: an answer took %v, want at most %v", o.name, worst, limit)
		}
		for _, c := range []*policyConn{p, pa} {
			if a, took, err := timedAsk(c, "198.51.100.1", "known@sender.example", rcpt); a != "DUNNO" || err != nil || took > dbTimeout {
				t.Errorf("PostgreSQL %s: known triplet: %q %v in %v, want DUNNO from the cache", o.name, a, err, took)
			}
		}

		if err := o.end(); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		for _, c := range []*policyConn{p, pa} {
			for {
				seq++
				a, err := c.ask("203.0.113.10", fmt.Sprintf("back%d@sender.example", seq), rcpt)
				if err == nil && isGreylisted(a) {
					break
				}
				if time.Since(back) > 10*time.Second {
					t.Fatalf("PostgreSQL %s: decisions not back 10s after the server's return: %q %v", o.name, a, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		recovered := time.Since(back)
		t.Logf("PostgreSQL %s: decisions back at both greymilters %v after the server's return", o.name, recovered.Round(time.Millisecond))
		if recovered > time.Second {
			t.Errorf("PostgreSQL %s: decisions back %v after the server's return, want within a second", o.name, recovered)
		}
		for _, gm := range []*harness.GreymilterProcess{tempfail, accept} {
			if n := strings.Count(gm.Log(), "database unavailable"); n != i+1 {
				t.Errorf("after %d outages greymilter logged \"database unavailable\" %d times, want once per outage", i+1, n)
			}
		}
	}
	// The waiting triplet's first attempt, committed before the outages.
	time.Sleep(time.Until(waitingFirst.Add(delay + 500*time.Millisecond)))
	if a := mustAsk(t, pa, "198.51.100.2", "waiting@sender.example", rcpt); !strings.HasPrefix(a, "PREPEND X-Greylist:") {
		t.Errorf("waiting triplet after the outages: %q, want a pass after its delay", a)
	}
	for _, gm := range []*harness.GreymilterProcess{tempfail, accept} {
		gm.WaitRecords(func(r harness.LogRecord) bool { return r["msg"] == "database back" }, 2)
	}
}

// TestT82FailoverURL: a URL naming a dead host first and the live one
// second decides through the live one.
func TestT82FailoverURL(t *testing.T) {
	t.Parallel()
	harness.Require(t)
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	url := fmt.Sprintf("postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write", harness.FreePort(t), srv.Port, db)
	_, addr := pgGreymilter(t, url)
	p := dialPolicyT(t, addr)
	if a := mustAsk(t, p, "198.51.100.62", "alice@sender.example", "bob-t82@"+harness.Domain); !isGreylisted(a) {
		t.Fatalf("first attempt: %q, want greylisted", a)
	}
	if n := pgCount(t, dsn, `SELECT count(*) FROM triplets`); n != 1 {
		t.Errorf("%d triplets in the live database, want 1", n)
	}
}
