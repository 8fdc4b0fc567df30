package policyd

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/engine"
)

// FuzzReader feeds arbitrary streams to the request parser, and every
// request it accepts to the answering code with a real engine. Properties:
// no panic; accepted requests hold no line break and stay within the
// limits; writing an accepted request back out and parsing it again gives
// the same request; every answer is one action= line and a blank line.
// Seeds are in testdata/fuzz/FuzzReader.
func FuzzReader(f *testing.F) {
	const maxLine, maxAttrs = 256, 40
	quiet := slog.New(slog.DiscardHandler)
	eng := engine.New(engine.Options{Logger: quiet}, &engine.Bypass{},
		&scriptStep{entered: make(chan struct{}, 1), release: make(chan struct{})})
	srv := New(Config{Decider: eng, Logger: quiet, MaxLineLength: maxLine, MaxAttributes: maxAttrs})

	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.Contains(in, []byte("slow@")) {
			return // the script step would wait for a test to release it
		}
		rd := NewReader(bytes.NewReader(in), maxLine, maxAttrs)
		nc, peer := net.Pipe()
		defer nc.Close()
		defer peer.Close()
		c := newConn(srv, nc)
		c.ctx = context.Background()
		var r Request
		for range len(in) + 1 {
			if err := rd.Read(&r); err != nil {
				return
			}
			if r.Attributes < 1 || r.Attributes > maxAttrs {
				t.Fatalf("accepted a request of %d attributes", r.Attributes)
			}
			for _, v := range fields(&r) {
				if strings.ContainsAny(v, "\n") || len(v) > maxLine {
					t.Fatalf("accepted value %q", v)
				}
			}

			var again Request
			if err := NewReader(strings.NewReader(encode(&r)), 2*maxLine, maxAttrs).Read(&again); err != nil {
				t.Fatalf("re-reading %q: %v", encode(&r), err)
			}
			again.Attributes = r.Attributes
			if again != r {
				t.Fatalf("round trip:\n got %+v\nwant %+v", again, r)
			}

			c.req = r
			out := string(c.answer(nil))
			action, ok := strings.CutPrefix(out, "action=")
			if !ok || !strings.HasSuffix(action, "\n\n") || strings.Count(action, "\n") != 2 {
				t.Fatalf("answer %q to %+v", out, r)
			}
		}
		t.Fatal("Read neither failed nor consumed input")
	})
}

func fields(r *Request) []string {
	return []string{r.Type, r.ProtocolState, r.ClientAddress, r.ClientName,
		r.HeloName, r.Sender, r.Recipient, r.SASLUsername, r.Instance, r.QueueID,
		r.CCertSubject, r.CCertIssuer, r.CCertFingerprint}
}

// encode writes r back as a request. Lines end in CRLF because the reader
// takes one \r off a line's end: a value that ends in \r survives that way.
func encode(r *Request) string {
	var b strings.Builder
	for i, name := range []string{"request", "protocol_state", "client_address", "client_name",
		"helo_name", "sender", "recipient", "sasl_username", "instance", "queue_id",
		"ccert_subject", "ccert_issuer", "ccert_fingerprint"} {
		if v := fields(r)[i]; v != "" {
			b.WriteString(name + "=" + v + "\r\n")
		}
	}
	if b.Len() == 0 {
		b.WriteString("unused=\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}
