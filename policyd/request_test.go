package policyd

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Request
		err  error // after the requests in want
	}{
		{
			// Captured from Postfix 3.7.11 (check_policy_service, RCPT TO).
			name: "postfix request",
			in:   readFixture(t, "testdata/postfix-rcpt.txt"),
			want: []Request{{
				Type: "smtpd_access_policy", ProtocolState: "RCPT", ClientAddress: "192.0.2.10",
				ClientName: "mail.example.org", HeloName: "mail.example.org",
				Sender: "alice@example.org", Recipient: "bob@test.example", Instance: "cdd.6b06f149.f6a7.0",
				Attributes: 29,
			}},
			err: io.EOF,
		},
		{
			name: "absent attributes are cleared",
			in:   "recipient=a@x\nsender=s@x\n\nrecipient=b@x\n\n",
			want: []Request{{Recipient: "a@x", Sender: "s@x", Attributes: 2}, {Recipient: "b@x", Attributes: 1}},
			err:  io.EOF,
		},
		{
			name: "value with = and spaces",
			in:   "ccert_subject=CN=a b\nsasl_username=user=x \n\n",
			want: []Request{{SASLUsername: "user=x ", CCertSubject: "CN=a b", Attributes: 2}},
			err:  io.EOF,
		},
		{
			name: "blank lines between requests",
			in:   "\n\nrecipient=a@x\n\n\n\nrecipient=b@x\r\n\r\n\n",
			want: []Request{{Recipient: "a@x", Attributes: 1}, {Recipient: "b@x", Attributes: 1}},
			err:  io.EOF,
		},
		{
			name: "ends inside a request",
			in:   "recipient=a@x\n\nrecipient=b@x\n",
			want: []Request{{Recipient: "a@x", Attributes: 1}},
			err:  io.ErrUnexpectedEOF,
		},
		{
			name: "ends inside a line",
			in:   "recipient=a@x",
			err:  io.ErrUnexpectedEOF,
		},
		{name: "no =", in: "recipient\n\n", err: ErrMalformed},
		{name: "empty name", in: "=x\n\n", err: ErrMalformed},
		{name: "line too long", in: "x=" + strings.Repeat("y", 100) + "\n\n", err: ErrLineTooLong},
		{name: "too many attributes", in: strings.Repeat("a=b\n", 11) + "\n", err: ErrTooManyAttributes},
		{name: "line one byte over", in: "x=" + strings.Repeat("y", 62) + "\n\n", err: ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := NewReader(strings.NewReader(tt.in), 64, 10)
			if tt.name == "postfix request" {
				rd = NewReader(strings.NewReader(tt.in), DefaultMaxLineLength, DefaultMaxAttributes)
			}
			var r Request
			for i, want := range tt.want {
				if err := rd.Read(&r); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if r != want {
					t.Errorf("request %d:\n got %+v\nwant %+v", i, r, want)
				}
			}
			if err := rd.Read(&r); !errors.Is(err, tt.err) {
				t.Errorf("then: %v, want %v", err, tt.err)
			}
		})
	}
}

func TestReaderLimitsExact(t *testing.T) {
	// 10 attributes and a line of exactly 64 bytes with its newline pass.
	in := strings.Repeat("a=b\n", 9) + "x=" + strings.Repeat("y", 61) + "\n\n"
	var r Request
	if err := NewReader(strings.NewReader(in), 64, 10).Read(&r); err != nil {
		t.Fatal(err)
	}
	if r.Attributes != 10 {
		t.Errorf("%d attributes", r.Attributes)
	}
}

// The hot path: a connection asking about the same client again and again
// costs one allocation per request (the new recipient), none for the rest.
func TestReaderReusesUnchangedValues(t *testing.T) {
	same := readFixture(t, "testdata/postfix-rcpt.txt")
	stream := strings.NewReader("")
	rd := NewReader(stream, DefaultMaxLineLength, DefaultMaxAttributes)
	var r Request
	read := func(in string) {
		stream.Reset(in)
		if err := rd.Read(&r); err != nil {
			t.Fatal(err)
		}
	}
	read(same)
	if n := testing.AllocsPerRun(100, func() { read(same) }); n != 0 {
		t.Errorf("same request again: %v allocations, want 0", n)
	}
	other := strings.Replace(same, "recipient=bob@test.example", "recipient=carol@test.example", 1)
	flip := false
	if n := testing.AllocsPerRun(100, func() {
		if flip = !flip; flip {
			read(other)
		} else {
			read(same)
		}
	}); n != 1 {
		t.Errorf("new recipient: %v allocations, want 1", n)
	}
}

func readFixture(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
