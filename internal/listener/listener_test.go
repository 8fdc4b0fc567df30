package listener

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

func TestLimitClosesConnectionsOverIt(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := New(inner, 2, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first, second := dial(), dial()
	a1, a2 := <-accepted, <-accepted
	_, _ = first, second

	// The third is closed by the server at once.
	third := dial()
	third.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("over the limit: read %v, want EOF", err)
	}
	if ln.Refused() != 1 || ln.Open() != 2 {
		t.Fatalf("refused %d open %d, want 1 and 2", ln.Refused(), ln.Open())
	}

	// Closing one (twice: the slot comes back once) makes room for one.
	a1.Close()
	a1.Close()
	dial()
	select {
	case <-accepted:
	case <-time.After(3 * time.Second):
		t.Fatal("no connection accepted after one closed")
	}
	if ln.Open() != 2 {
		t.Fatalf("open %d, want 2", ln.Open())
	}
	a2.Close()

	ln.Close()
	if _, ok := <-accepted; ok {
		t.Fatal("Accept went on after Close")
	}
}
