package milter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/greymilter/greymilter/engine"
)

// passDecider lets every recipient through at once, so that a benchmark
// through it measures the milter front end alone.
type passDecider struct{}

func (passDecider) Decide(context.Context, *engine.Request) engine.Verdict {
	return engine.Verdict{Action: engine.Pass, Step: "bench"}
}

// BenchmarkSession runs one MTA session (connect, HELO, MAIL, two RCPTs,
// abort) per iteration over loopback: through greymilter's front end
// (packets parsed into a Request for each recipient, the verdict turned
// into a reply), and through go-milter's no-op milter, the ceiling of any
// milter on this library. The difference is what the front end costs.
func BenchmarkSession(b *testing.B) {
	frontEnd := func(tb testing.TB) net.Listener {
		ln := listen(tb)
		s := New(Config{Decider: passDecider{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		go s.Serve(context.Background(), ln)
		tb.Cleanup(func() { s.Shutdown(context.Background()) })
		return ln
	}
	noOp := func(tb testing.TB) net.Listener {
		ln := listen(tb)
		s := &gomilter.Server{
			NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
			Actions:   gomilter.OptAddHeader,
			Protocol:  Protocol,
		}
		go s.Serve(ln)
		tb.Cleanup(func() { s.Close() })
		return ln
	}
	for _, bc := range []struct {
		name  string
		start func(testing.TB) net.Listener
	}{{"greymilter", frontEnd}, {"go-milter-noop", noOp}} {
		b.Run(bc.name, func(b *testing.B) {
			addr := bc.start(b).Addr().String()
			c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
				ReadTimeout:  5 * time.Second,
				WriteTimeout: 5 * time.Second,
				ActionMask:   gomilter.OptAddHeader,
				ProtocolMask: gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH,
			})
			b.ReportAllocs()
			for b.Loop() {
				if err := mtaTransaction(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func listen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// mtaTransaction is what Postfix sends for a mail to two recipients that the
// client then abandons.
func mtaTransaction(c *gomilter.Client) error {
	s, err := c.Session()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Macros(gomilter.CodeConn, "j", "mx.test", "{daemon_name}", "smtpd", "{client_addr}", "198.51.100.7"); err != nil {
		return err
	}
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			return s.Conn("mail.example.org", gomilter.FamilyInet, 25, "198.51.100.7")
		},
		func() (*gomilter.Action, error) { return s.Helo("mail.example.org") },
		func() (*gomilter.Action, error) { return s.Mail("<alice@example.org>", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("<bob@example.net>", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("<carol@example.net>", nil) },
	}
	for _, step := range steps {
		a, err := step()
		if err != nil {
			return err
		}
		if a.Code != gomilter.ActContinue {
			return fmt.Errorf("unexpected action %c %q", a.Code, a.SMTPText)
		}
	}
	return s.Abort()
}
