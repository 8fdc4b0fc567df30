// Command nullpolicy is a Postfix policy server that answers DUNNO to every
// request, on connections kept open as smtpd keeps them: the ceiling of
// the policy protocol itself.
package main

import (
	"bufio"
	"bytes"
	"net"
	"sync"

	"github.com/greymilter/greymilter/bench/internal/serve"
)

// maxLine bounds an attribute line; a longer one ends the connection.
const maxLine = 64 << 10

var dunno = []byte("action=DUNNO\n\n")

func main() {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		ln    net.Listener
	)
	serve.Main("nullpolicy", "A policy server that answers DUNNO to everything, for benchmarks.",
		func(l net.Listener) error {
			mu.Lock()
			ln = l
			mu.Unlock()
			for {
				c, err := l.Accept()
				if err != nil {
					return err
				}
				mu.Lock()
				conns[c] = struct{}{}
				mu.Unlock()
				go func() {
					answer(c)
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
			}
		},
		func() {
			mu.Lock()
			defer mu.Unlock()
			if ln != nil {
				ln.Close()
			}
			for c := range conns {
				c.Close()
			}
		})
}

// answer reads requests (attribute lines ended by an empty line) and
// answers each with DUNNO.
func answer(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, maxLine)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		if len(bytes.TrimRight(line, "\r\n")) > 0 {
			continue
		}
		if _, err := c.Write(dunno); err != nil {
			return
		}
	}
}
