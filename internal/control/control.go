// Package control is greymilter's control socket: a unix socket on which
// `greymilter db` asks the running daemon to read or change its store, so
// that the daemon's in-memory index and caches stay in step with every
// change. The protocol is JSON lines: the client writes one Request a
// line; the server answers each with zero or more Item lines and one
// Done line. A connection may carry several requests, one after another.
//
// The same Ops run the requests in the daemon and, when no daemon runs,
// in `greymilter db` itself, straight on the store.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
)

// Request is one command.
type Request struct {
	Cmd string `json:"cmd"` // ping, list, delete, pass, whitelist, unwhitelist, whitelist-list, purge, export, import, explain, slow-retriers

	Client    string `json:"client,omitempty"` // filter, or whitelist network
	Sender    string `json:"sender,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	State     string `json:"state,omitempty"` // "", "pending", "passed"
	Yes       bool   `json:"yes,omitempty"`   // delete more than one triplet

	Domain string `json:"domain,omitempty"` // slow-retriers: only this sender domain

	For  string `json:"for,omitempty"` // whitelist duration; "" is forever
	Note string `json:"note,omitempty"`

	Explain *ExplainRequest       `json:"explain,omitempty"`
	Lines   []greylist.ExportLine `json:"lines,omitempty"` // import
}

// ExplainRequest is the made-up mail that explain judges.
type ExplainRequest struct {
	Client    string `json:"client"`
	Name      string `json:"name,omitempty"`
	Helo      string `json:"helo,omitempty"`
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
}

// Done ends the answer to a request.
type Done struct {
	Done        bool         `json:"done"`
	Error       string       `json:"error,omitempty"`
	Refused     bool         `json:"refused,omitempty"` // Error is an ErrRefused
	Count       int          `json:"count"`
	Hashed      bool         `json:"hashed,omitempty"` // slow-retriers: the domains are --privacy hashes
	Purged      *Purged      `json:"purged,omitempty"`
	Explanation *Explanation `json:"explanation,omitempty"`
}

// Purged is what a purge removed.
type Purged struct {
	Triplets, Unverified, Clients int
}

// Explanation is engine.Explanation for the wire.
type Explanation struct {
	Action string             `json:"action"`
	Reply  string             `json:"reply,omitempty"`
	Step   string             `json:"step"`
	Reason string             `json:"reason"`
	Wait   int64              `json:"wait_seconds,omitempty"`
	DryRun bool               `json:"dry_run,omitempty"`
	Error  string             `json:"error,omitempty"`
	Steps  []engine.StepTrace `json:"steps"`
}

// line is what the server writes: an item, or the end of an answer.
type line struct {
	Item *greylist.ExportLine `json:"item,omitempty"`
	Done
}

// Ops runs requests on a store.
type Ops struct {
	Store greylist.Store
	Rules func() greylist.Rules // for purge: the rules in force
	// Explain, if set, judges a request as the engine would now; only the
	// daemon has an engine.
	Explain func(ctx context.Context, r *engine.Request) engine.Explanation
	Now     func() time.Time
}

// ErrRefused is a request refused as given (e.g. delete of many without Yes).
var ErrRefused = errors.New("refused")

// Do runs req, giving each item to emit, and returns the end of its answer.
func (o *Ops) Do(ctx context.Context, req Request, emit func(greylist.ExportLine) error) (Done, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if req.Cmd == "ping" {
		return Done{}, nil
	}
	if req.Cmd == "explain" {
		return o.explain(ctx, req.Explain)
	}
	if req.Cmd == "slow-retriers" {
		list, hashed, err := greylist.ListSlowRetriers(ctx, o.Store, req.Domain)
		if err != nil {
			return Done{}, err
		}
		for _, r := range list {
			if err := emit(greylist.SlowRetrierLine(r)); err != nil {
				return Done{}, err
			}
		}
		return Done{Count: len(list), Hashed: hashed}, nil
	}
	a, ok := o.Store.(greylist.Admin)
	if !ok {
		return Done{}, fmt.Errorf("this store (%T) has no admin commands", o.Store)
	}
	f, err := req.filter()
	if err != nil {
		return Done{}, err
	}
	switch req.Cmd {
	case "list":
		ts, err := a.List(ctx, f)
		if err != nil {
			return Done{}, err
		}
		for _, t := range ts {
			if err := emit(greylist.TripletLine(t)); err != nil {
				return Done{}, err
			}
		}
		return Done{Count: len(ts)}, nil
	case "delete":
		if !req.Yes {
			ts, err := a.List(ctx, f)
			if err != nil {
				return Done{}, err
			}
			if len(ts) > 1 {
				return Done{Count: len(ts)}, fmt.Errorf("%w: %d triplets match; give --yes to delete them all", ErrRefused, len(ts))
			}
		}
		n, err := a.Delete(ctx, f)
		return Done{Count: n}, err
	case "pass":
		n, err := a.Pass(ctx, f, now())
		return Done{Count: n}, err
	case "whitelist", "unwhitelist":
		p, err := greylist.ParseNetwork(req.Client)
		if err != nil {
			return Done{}, fmt.Errorf("--client %w", err)
		}
		if req.Cmd == "unwhitelist" {
			found, err := a.RemoveWhitelist(ctx, p)
			if err != nil {
				return Done{}, err
			}
			if !found {
				return Done{}, fmt.Errorf("%s is not whitelisted", p)
			}
			return Done{Count: 1}, nil
		}
		e := greylist.WhitelistEntry{Network: p, Added: now(), Note: req.Note}
		if req.For != "" {
			d, err := time.ParseDuration(req.For)
			if err != nil || d <= 0 {
				return Done{}, fmt.Errorf("--for %q: want a duration such as 12h or 30m", req.For)
			}
			e.Expires = e.Added.Add(d)
		}
		if err := a.AddWhitelist(ctx, e); err != nil {
			return Done{}, err
		}
		return Done{Count: 1}, emit(greylist.WhitelistLine(e))
	case "whitelist-list":
		es, err := a.Whitelist(ctx)
		if err != nil {
			return Done{}, err
		}
		for _, e := range es {
			if err := emit(greylist.WhitelistLine(e)); err != nil {
				return Done{}, err
			}
		}
		return Done{Count: len(es)}, nil
	case "purge":
		st, err := o.Store.Purge(ctx, o.Rules(), now())
		if err != nil {
			return Done{}, err
		}
		return Done{Count: st.Triplets + st.Unverified + st.Clients, Purged: &Purged{st.Triplets, st.Unverified, st.Clients}}, nil
	case "export":
		n, err := greylist.ExportLines(ctx, a, emit)
		return Done{Count: n}, err
	case "import":
		im := &greylist.Imported{}
		for i, l := range req.Lines {
			if err := im.Add(l); err != nil {
				return Done{}, fmt.Errorf("line %d of the batch: %w", i+1, err)
			}
		}
		return Done{Count: im.Len()}, im.Write(ctx, a)
	}
	return Done{}, fmt.Errorf("unknown command %q", req.Cmd)
}

func (req Request) filter() (greylist.Filter, error) {
	f := greylist.Filter{Client: req.Client, Sender: req.Sender, Recipient: req.Recipient}
	switch req.State {
	case "":
	case "pending":
		f.State = greylist.Pending
	case "passed":
		f.State = greylist.PassedState
	default:
		return f, fmt.Errorf("state %q: want pending or passed", req.State)
	}
	f = f.Normalized()
	if req.Cmd != "whitelist" && req.Cmd != "unwhitelist" {
		if err := f.Check(); err != nil {
			return f, fmt.Errorf("--client: %w", err)
		}
	}
	return f, nil
}

func (o *Ops) explain(ctx context.Context, er *ExplainRequest) (Done, error) {
	if o.Explain == nil {
		return Done{}, errors.New("explain needs the running greymilter (its lists, DNS lists and checks): start it, or give its --control-socket")
	}
	if er == nil || er.Client == "" || er.Recipient == "" {
		return Done{}, errors.New("explain: --client and --recipient are needed")
	}
	addr, err := netip.ParseAddr(er.Client)
	if err != nil {
		return Done{}, fmt.Errorf("explain: --client %q: want an address", er.Client)
	}
	x := o.Explain(ctx, &engine.Request{ClientAddr: addr.Unmap(), ClientName: er.Name, Helo: er.Helo, Sender: er.Sender, Recipient: er.Recipient})
	out := &Explanation{Action: x.Verdict.Action.String(), Step: x.Verdict.Step, Reason: x.Verdict.Reason,
		Wait: int64((x.Verdict.Wait + time.Second - 1) / time.Second), DryRun: x.DryRun, Error: x.Error, Steps: x.Steps}
	if x.Verdict.Code != 0 {
		out.Reply = x.Verdict.Reply()
	}
	return Done{Count: len(x.Steps), Explanation: out}, nil
}

// Server answers requests on a listener.
type Server struct {
	Ops *Ops
	Log interface {
		Info(msg string, args ...any)
	}

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// ErrServerClosed is what Serve returns after Shutdown.
var ErrServerClosed = errors.New("control: server closed")

// Serve answers connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.ln, s.conns = ln, map[net.Conn]struct{}{}
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Shutdown stops accepting, lets requests under way end until ctx does,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// maxRequest bounds one request line (an import batch).
const maxRequest = 16 << 20

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	enc := json.NewEncoder(w)
	for {
		raw, err := readLine(r, maxRequest)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				enc.Encode(line{Done: Done{Done: true, Error: err.Error()}})
				w.Flush()
			}
			return
		}
		var req Request
		if err := json.Unmarshal(raw, &req); err != nil {
			enc.Encode(line{Done: Done{Done: true, Error: "bad request: " + err.Error()}})
			w.Flush()
			return
		}
		done, err := s.Ops.Do(context.Background(), req, func(l greylist.ExportLine) error {
			return enc.Encode(line{Item: &l})
		})
		done.Done = true
		if err != nil {
			done.Error, done.Refused = err.Error(), errors.Is(err, ErrRefused)
		}
		if s.Log != nil && req.Cmd != "ping" && req.Cmd != "list" && req.Cmd != "export" && req.Cmd != "explain" && req.Cmd != "whitelist-list" && req.Cmd != "slow-retriers" {
			s.Log.Info("control command", "cmd", req.Cmd, "client", req.Client, "sender", req.Sender, "recipient", req.Recipient, "count", done.Count, "error", done.Error)
		}
		if err := enc.Encode(line{Done: done}); err != nil {
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// readLine reads one line of at most limit bytes.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var out []byte
	for {
		part, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
		if len(out) > limit {
			return nil, fmt.Errorf("request longer than %d bytes", limit)
		}
		if !isPrefix {
			return out, nil
		}
	}
}

// Client talks to a daemon's control socket.
type Client struct {
	c   net.Conn
	r   *bufio.Reader
	enc *json.Encoder
}

// Dial connects to the control socket at path.
func Dial(path string, timeout time.Duration) (*Client, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	return &Client{c: c, r: bufio.NewReaderSize(c, 64*1024), enc: json.NewEncoder(c)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// Do sends req and hands each item of the answer to emit.
func (c *Client) Do(req Request, emit func(greylist.ExportLine) error) (Done, error) {
	if err := c.enc.Encode(req); err != nil {
		return Done{}, fmt.Errorf("control: send: %w", err)
	}
	for {
		raw, err := readLine(c.r, 1<<40)
		if err != nil {
			return Done{}, fmt.Errorf("control: the daemon closed the connection: %w", err)
		}
		var l line
		if err := json.Unmarshal(raw, &l); err != nil {
			return Done{}, fmt.Errorf("control: bad answer: %w", err)
		}
		if l.Item != nil {
			if err := emit(*l.Item); err != nil {
				return Done{}, err
			}
			continue
		}
		if !l.Done.Done {
			return Done{}, errors.New("control: bad answer: neither item nor end")
		}
		if l.Refused {
			return l.Done, fmt.Errorf("%w%s", ErrRefused, strings.TrimPrefix(l.Error, ErrRefused.Error()))
		}
		if l.Error != "" {
			return l.Done, errors.New(l.Error)
		}
		return l.Done, nil
	}
}
