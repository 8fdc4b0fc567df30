package main

import (
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/greymilter/greymilter/milter"
)

// nullMilter starts an in-process go-milter server that lets everything
// through, asking for the stages greymilter asks for.
func nullMilter(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Actions:   gomilter.OptAddHeader,
		Protocol:  milter.Protocol,
	}
	go s.Serve(ln)
	tb.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// BenchmarkMilterClient compares one SMTP session (connect, HELO, MAIL, two
// RCPTs, abort, quit) through greyload's client and through go-milter's:
// the client must cost the server under test as little CPU as possible.
func BenchmarkMilterClient(b *testing.B) {
	addr := nullMilter(b)
	b.Run("greyload", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := dialMilter("tcp", addr, 5*time.Second, time.Time{})
			if err != nil {
				b.Fatal(err)
			}
			steps := []func() (Answer, error){
				func() (Answer, error) { return m.Connect("mx.test", "198.18.0.10", '4', 4000) },
				func() (Answer, error) { return m.Helo("mx.example.net") },
				func() (Answer, error) { return m.Mail("ABC", "s@example.com") },
				func() (Answer, error) { return m.Rcpt("ABC", "r1@example.org") },
				func() (Answer, error) { return m.Rcpt("ABC", "r2@example.org") },
			}
			for _, step := range steps {
				if a, err := step(); err != nil || a.Code != repContinue {
					b.Fatalf("%v %v", a, err)
				}
			}
			m.Abort()
			if err := m.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-milter", func(b *testing.B) {
		b.ReportAllocs()
		c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ActionMask: gomilter.OptAddHeader,
		})
		for b.Loop() {
			s, err := c.Session()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Macros(gomilter.CodeConn, "j", "mx.test", "{daemon_name}", "smtpd", "{client_addr}", "198.18.0.10"); err != nil {
				b.Fatal(err)
			}
			steps := []func() (*gomilter.Action, error){
				func() (*gomilter.Action, error) { return s.Conn("unknown", gomilter.FamilyInet, 4000, "198.18.0.10") },
				func() (*gomilter.Action, error) { return s.Helo("mx.example.net") },
				func() (*gomilter.Action, error) {
					s.Macros(gomilter.CodeMail, "i", "ABC", "{auth_authen}", "")
					return s.Mail("s@example.com", nil)
				},
				func() (*gomilter.Action, error) {
					s.Macros(gomilter.CodeRcpt, "i", "ABC", "{rcpt_addr}", "r1@example.org")
					return s.Rcpt("r1@example.org", nil)
				},
				func() (*gomilter.Action, error) {
					s.Macros(gomilter.CodeRcpt, "i", "ABC", "{rcpt_addr}", "r2@example.org")
					return s.Rcpt("r2@example.org", nil)
				},
			}
			for _, step := range steps {
				if a, err := step(); err != nil || a.Code != gomilter.ActContinue {
					b.Fatalf("%v %v", a, err)
				}
			}
			s.Close()
		}
	})
}
