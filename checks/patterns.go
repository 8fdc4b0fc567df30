package checks

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
)

//go:embed default/dynamic_patterns
var defaultPatterns []byte

// Patterns say which host names look dynamic (end-user lines) and which
// look static (mail servers, hosting). They are read from files in the
// format of default/dynamic_patterns, which documents it; a Patterns is
// immutable once read and safe for concurrent use.
type Patterns struct {
	dynamicWords, staticWords map[string]bool
	dynamicRes, staticRes     []*regexp.Regexp
}

var parsedDefault = sync.OnceValue(func() *Patterns {
	p, err := ParsePatterns(bytes.NewReader(defaultPatterns), "default/dynamic_patterns")
	if err != nil {
		panic(err) // the file is built in; a test reads it
	}
	return p
})

// DefaultPatterns returns the built-in patterns.
func DefaultPatterns() *Patterns { return parsedDefault() }

// LoadPatterns reads pattern files after the built-in patterns (unless
// withDefault is false), each adding to those before it.
func LoadPatterns(withDefault bool, files ...string) (*Patterns, error) {
	p := newPatterns()
	if withDefault {
		p.add(DefaultPatterns())
	}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("dynamic patterns: %w", err)
		}
		q, err := ParsePatterns(f, file)
		f.Close()
		if err != nil {
			return nil, err
		}
		p.add(q)
	}
	return p, nil
}

// ParsePatterns reads patterns from r; file names r in errors, which say
// "file:line: ...".
func ParsePatterns(r io.Reader, file string) (*Patterns, error) {
	p := newPatterns()
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"dynamic PATTERN\" or \"static PATTERN\"", file, line)
		}
		var words map[string]bool
		var res *[]*regexp.Regexp
		switch fields[0] {
		case "dynamic":
			words, res = p.dynamicWords, &p.dynamicRes
		case "static":
			words, res = p.staticWords, &p.staticRes
		default:
			return nil, fmt.Errorf("%s:%d: unknown kind %q: want dynamic or static", file, line, fields[0])
		}
		pat := fields[1]
		if expr, ok := strings.CutPrefix(pat, "/"); ok {
			expr, ok = strings.CutSuffix(expr, "/")
			if !ok || expr == "" {
				return nil, fmt.Errorf("%s:%d: regexp %q: want /REGEXP/", file, line, pat)
			}
			re, err := regexp.Compile("(?i)" + expr)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", file, line, err)
			}
			*res = append(*res, re)
			continue
		}
		word := strings.ToLower(pat)
		if ws := splitWords(word); len(ws) != 1 || ws[0] != word {
			return nil, fmt.Errorf("%s:%d: word %q would never match: names are cut into words of letters or of digits; use a /regexp/", file, line, pat)
		}
		words[word] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: dynamic patterns: %w", file, err)
	}
	return p, nil
}

func newPatterns() *Patterns {
	return &Patterns{dynamicWords: map[string]bool{}, staticWords: map[string]bool{}}
}

func (p *Patterns) add(q *Patterns) {
	for w := range q.dynamicWords {
		p.dynamicWords[w] = true
	}
	for w := range q.staticWords {
		p.staticWords[w] = true
	}
	p.dynamicRes = append(p.dynamicRes, q.dynamicRes...)
	p.staticRes = append(p.staticRes, q.staticRes...)
}
