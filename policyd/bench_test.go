package policyd

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// BenchmarkReader parses a Postfix 3.7 RCPT request whose recipient changes
// every time, as on a connection that asks about each recipient in turn.
func BenchmarkReader(b *testing.B) {
	same := readFixture(b, "testdata/postfix-rcpt.txt")
	reqs := []string{same, strings.Replace(same, "recipient=bob@", "recipient=carol@", 1)}
	stream := strings.NewReader("")
	rd := NewReader(stream, DefaultMaxLineLength, DefaultMaxAttributes)
	var r Request
	b.SetBytes(int64(len(same)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		stream.Reset(reqs[i&1])
		if err := rd.Read(&r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServer measures whole request/answer round trips over loopback
// TCP against the real greylist engine on SQLite :memory:, on one
// connection and on parallel ones. Recipients cycle through a set that
// passed greylisting already, so this is the steady state of known mail.
func BenchmarkServer(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", parallel), func(b *testing.B) {
			f, clock := startGreylist(b, ":memory:")
			const n = 64
			reqs := make([]string, n)
			for i := range reqs {
				reqs[i] = rcpt(fmt.Sprintf("user%d@example.net", i))
			}
			warm := f.dialB(b)
			for _, r := range reqs {
				warm.roundTrip(b, r)
			}
			clock.Advance(greylist.DefaultRules.Delay + time.Second)
			for _, r := range reqs {
				warm.roundTrip(b, r)
			}
			b.ReportAllocs()
			if !parallel {
				c := f.dialB(b)
				for i := 0; b.Loop(); i++ {
					if a := c.roundTrip(b, reqs[i%n]); a != "action=DUNNO\n\n" {
						b.Fatalf("answer %q", a)
					}
				}
				return
			}
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				c := f.dialB(b)
				for pb.Next() {
					if a := c.roundTrip(b, reqs[next.Add(1)%n]); a != "action=DUNNO\n\n" {
						b.Errorf("answer %q", a)
						return
					}
				}
			})
		})
	}
}

type benchClient struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte
}

func (f *fixture) dialB(b *testing.B) *benchClient {
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &benchClient{c: c, br: bufio.NewReader(c)}
}

func (c *benchClient) roundTrip(b *testing.B, req string) string {
	if _, err := c.c.Write([]byte(req)); err != nil {
		b.Fatal(err)
	}
	c.buf = c.buf[:0]
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		c.buf = append(c.buf, line...)
		if len(line) == 1 {
			return string(c.buf)
		}
	}
}
