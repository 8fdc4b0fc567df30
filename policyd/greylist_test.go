package policyd

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
	"github.com/greymilter/greymilter/internal/clocktest"
)

// startGreylist runs a Server in front of the engine greymilter builds:
// bypass, known and greylist steps on a real SQLite store.
func startGreylist(t testing.TB, db string) (*fixture, *clocktest.Clock) {
	t.Helper()
	store, err := sqlitestore.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	quiet := slog.New(slog.DiscardHandler)
	g := &engine.Greylisting{
		Greylist: &greylist.Greylist{Store: store, Rules: greylist.DefaultRules, Log: quiet},
		Keyer:    greylist.DefaultKeyer,
		Hostname: "mx.test",
	}
	clock := clocktest.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	eng := engine.New(engine.Options{Clock: clock, Logger: quiet}, &engine.Bypass{}, g.KnownStep(), g.GreylistStep())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, srv: New(Config{Decider: eng, Logger: quiet}), addr: ln.Addr().String(), serve: make(chan error, 1)}
	go func() { f.serve <- f.srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.srv.Shutdown(ctx)
	})
	return f, clock
}

func TestGreylistThroughPolicy(t *testing.T) {
	for _, db := range []string{":memory:", "file"} {
		t.Run(db, func(t *testing.T) {
			if db == "file" {
				db = filepath.Join(t.TempDir(), "greymilter.db")
			}
			f, clock := startGreylist(t, db)
			c := f.dial()
			steps := []struct {
				name    string
				advance time.Duration
				req     string
				want    string
			}{
				{"first attempt", 0, rcpt("bob@example.net", "instance", "m1"),
					"DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 300 seconds"},
				{"early retry", 100 * time.Second, rcpt("bob@example.net", "instance", "m2"),
					"DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 200 seconds"},
				{"after the delay, from the same /24", 250 * time.Second, rcpt("bob@example.net", "instance", "m3", "client_address", "192.0.2.77"),
					"PREPEND X-Greylist: delayed 350 seconds by greymilter at mx.test; Wed, 25 Nov 2026 12:05:50 +0000"},
				{"another recipient of that message", 0, rcpt("carol@example.net", "instance", "m3"),
					"DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 300 seconds"},
				{"known triplet", time.Minute, rcpt("bob@example.net", "instance", "m4"), "DUNNO"},
				{"authenticated sender", 0, rcpt("dave@example.net", "instance", "m5", "sasl_username", "alice"), "DUNNO"},
				{"the same triplet unauthenticated is new", 0, rcpt("dave@example.net", "instance", "m6"),
					"DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 300 seconds"},
				{"other subnet", 0, rcpt("bob@example.net", "instance", "m7", "client_address", "192.0.3.10"),
					"DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 300 seconds"},
			}
			for _, s := range steps {
				clock.Advance(s.advance)
				if got := c.ask(s.req); got != s.want {
					t.Errorf("%s:\n got %q\nwant %q", s.name, got, s.want)
				}
			}
		})
	}
}

// Two recipients of one message pass after their delay: the message gets
// one X-Greylist header, as with postgrey.
func TestGreylistOneHeaderPerMessage(t *testing.T) {
	f, clock := startGreylist(t, ":memory:")
	c := f.dial()
	for _, r := range []string{"a@example.net", "b@example.net"} {
		if got := c.ask(rcpt(r, "instance", "first")); got[:5] != "DEFER" {
			t.Fatalf("%s: %q", r, got)
		}
	}
	clock.Advance(6 * time.Minute)
	want := []string{"PREPEND X-Greylist: delayed 360 seconds by greymilter at mx.test; Wed, 25 Nov 2026 12:06:00 +0000", "DUNNO"}
	for i, r := range []string{"a@example.net", "b@example.net"} {
		if got := c.ask(rcpt(r, "instance", "retry")); got != want[i] {
			t.Errorf("%s: got %q, want %q", r, got, want[i])
		}
	}
}
