package lists

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to the parser as both kinds of list. A
// file either fails with a ParseError at one of its lines, or gives a list
// whose address table is sound and which matches every address it lists.
// Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, kind := range []Kind{Clients, Addresses} {
			l, err := Parse(kind, "fuzz", bytes.NewReader(data))
			if err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.File != "fuzz" || pe.Line < 1 || pe.Line > lines {
					t.Fatalf("%v: error %v is not a ParseError at a line of the file (%d lines)", kind, err, lines)
				}
				if want := fmt.Sprintf("fuzz:%d: ", pe.Line); !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("%v: error %q does not start %q", kind, err, want)
				}
				continue
			}
			if l.Len() > lines {
				t.Fatalf("%v: %d rules from %d lines", kind, l.Len(), lines)
			}
			checkDisjoint(t, l.v4)
			checkDisjoint(t, l.v6)
			for _, line := range strings.Split(string(data), "\n") {
				line, _, _ = strings.Cut(line, "#")
				line = strings.TrimSpace(line)
				if kind == Clients {
					if a, err := netip.ParseAddr(line); err == nil && a.Zone() == "" {
						if _, ok := l.MatchClient(a, ""); !ok {
							t.Fatalf("list with line %q does not match %v", line, a)
						}
					}
					l.MatchClient(netip.IPv6Unspecified(), line)
				} else if addr, ok := listedAddress(line); ok {
					// No rule is loaded that can never match.
					if _, ok := l.MatchAddress(addr); !ok {
						t.Fatalf("list with line %q does not match %q", line, addr)
					}
				}
			}
		}
	})
}

// listedAddress returns an address that the address rule on line lists,
// false for a regex or a blank line.
func listedAddress(line string) (string, bool) {
	if line == "" || line[0] == '/' {
		return "", false
	}
	if strings.HasPrefix(line, "<") && strings.HasSuffix(line, ">") {
		line = line[1 : len(line)-1]
		if line == "" {
			return "", true // the null sender
		}
	}
	i := strings.LastIndexByte(line, '@')
	switch {
	case i < 0:
		return "x@" + line, true
	case i == len(line)-1:
		return line + "example.org", true
	case line[:i] == "*":
		return "x" + line[i:], true
	case i == 0:
		return "x" + line, true
	}
	return line, true
}
