package listener

import (
	"errors"
	"net"
	"testing"
)

func TestSetClose(t *testing.T) {
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	var s Set
	served, removed := listen(), listen()
	if !s.Add(served) || !s.Add(removed) {
		t.Fatal("Add refused a listener on an open set")
	}
	s.Remove(removed)
	s.Close()
	if !s.Closed() {
		t.Error("Closed is false after Close")
	}
	if _, err := served.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a listener of the closed set: %v, want net.ErrClosed", err)
	}
	if _, err := net.Dial("tcp", removed.Addr().String()); err != nil {
		t.Errorf("a removed listener was closed too: %v", err)
	}
	late := listen()
	if s.Add(late) {
		t.Error("Add accepted a listener on a closed set")
	}
	if _, err := late.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a listener added after Close: %v, want net.ErrClosed", err)
	}
}
