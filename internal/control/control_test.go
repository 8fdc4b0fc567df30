package control

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/sqlitestore"
)

// serve starts a Server on a unix socket over a real store and returns a
// connected client.
func serve(t *testing.T) (*Client, *Server, greylist.Store) {
	t.Helper()
	return serveOver(t, func(s greylist.Store) greylist.Store { return s })
}

// serveOver is serve with the server's store made by wrap of the real one
// (which it returns).
func serveOver(t *testing.T, wrap func(greylist.Store) greylist.Store) (*Client, *Server, greylist.Store) {
	t.Helper()
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	path := filepath.Join(t.TempDir(), "ctl")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Ops: &Ops{Store: wrap(store), Rules: func() greylist.Rules { return greylist.DefaultRules }}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	})
	c, err := Dial(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, srv, store
}

// Several requests on one connection; items stream before the end line;
// a refusal comes back as ErrRefused; an error leaves the connection usable.
func TestClientServer(t *testing.T) {
	c, _, store := serve(t)
	ctx := context.Background()
	now := time.Now()
	for _, rcpt := range []string{"a@example.net", "b@example.net"} {
		if _, err := store.Attempt(ctx, greylist.Key{Client: "192.0.2.0/24", Sender: "s@example.org", Recipient: rcpt}, greylist.DefaultRules, now); err != nil {
			t.Fatal(err)
		}
	}
	var items []greylist.ExportLine
	done, err := c.Do(Request{Cmd: "list", Client: "192.0.2.1"}, func(l greylist.ExportLine) error { items = append(items, l); return nil })
	if err != nil || done.Count != 2 || len(items) != 2 || items[0].Recipient != "a@example.net" {
		t.Fatalf("list: %+v %v %+v", done, err, items)
	}
	_, err = c.Do(Request{Cmd: "delete", Client: "192.0.2.0/24"}, nil)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "2 triplets match") {
		t.Fatalf("delete of two without Yes: %v", err)
	}
	if _, err := c.Do(Request{Cmd: "nonsense"}, nil); err == nil || !strings.Contains(err.Error(), `unknown command "nonsense"`) {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err := c.Do(Request{Cmd: "list", Client: "not-a-net"}, nil); err == nil || !strings.Contains(err.Error(), "not-a-net") {
		t.Fatalf("bad filter: %v", err)
	}
	if _, err := c.Do(Request{Cmd: "explain", Explain: &ExplainRequest{Client: "192.0.2.1", Recipient: "a@example.net"}}, nil); err == nil || !strings.Contains(err.Error(), "needs the running greymilter") {
		t.Fatalf("explain without an engine: %v", err)
	}
	done, err = c.Do(Request{Cmd: "delete", Client: "192.0.2.0/24", Yes: true}, nil)
	if err != nil || done.Count != 2 {
		t.Fatalf("delete with Yes: %+v %v", done, err)
	}
	if _, found, _ := store.Lookup(ctx, greylist.Key{Client: "192.0.2.0/24", Sender: "s@example.org", Recipient: "a@example.net"}); found {
		t.Error("deleted triplet still found by the store")
	}
}

// slow-retriers lists what the store learned, through the socket; under
// privacy it says the domains are hashes and finds one by its name.
func TestSlowRetriers(t *testing.T) {
	p, err := greylist.NewPrivacy([]byte(strings.Repeat("k", greylist.MinSecretLen)))
	if err != nil {
		t.Fatal(err)
	}
	c, _, store := serveOver(t, func(s greylist.Store) greylist.Store {
		return greylist.Private(s, p, greylist.Keyer{IPv4Prefix: 24, IPv6Prefix: 64})
	})
	ctx := context.Background()
	now := time.Now()
	for _, d := range []string{"slow.example", "other.example"} {
		if err := store.(greylist.SlowRetryStore).NoteSlowRetry(ctx, p.Domain(d), p.Client("192.0.2.0/24"), now); err != nil {
			t.Fatal(err)
		}
	}
	var items []greylist.ExportLine
	done, err := c.Do(Request{Cmd: "slow-retriers", Domain: "slow.example"}, func(l greylist.ExportLine) error { items = append(items, l); return nil })
	if err != nil || !done.Hashed || done.Count != 1 || len(items) != 1 || items[0].Type != "slow-retrier" || items[0].Domain != p.Domain("slow.example") || items[0].LateClients != 1 {
		t.Fatalf("slow-retriers --domain slow.example: %+v %v %+v", done, err, items)
	}
	if done, err = c.Do(Request{Cmd: "slow-retriers"}, func(greylist.ExportLine) error { return nil }); err != nil || done.Count != 2 {
		t.Fatalf("slow-retriers: %+v %v, want 2", done, err)
	}
}

// A request line that is not JSON gets an error and the connection closes.
func TestBadRequest(t *testing.T) {
	c, _, _ := serve(t)
	if _, err := c.c.Write([]byte("not json\n")); err != nil {
		t.Fatal(err)
	}
	raw, err := readLine(c.r, 1<<20)
	if err != nil || !strings.Contains(string(raw), `"error":"bad request`) {
		t.Fatalf("answer %q, %v", raw, err)
	}
	if _, err := readLine(c.r, 1<<20); err == nil {
		t.Error("connection still open after a bad request")
	}
}
