package rules

import "context"

// Set is the rules of one file. It never changes once loaded: a reload
// reads the file into a new Set, which replaces the old one only when the
// whole configuration is good. Any number of goroutines may match against it.
type Set struct {
	rules []*Rule
}

// Load reads the rules file at path.
func Load(path string, opts Options) (*Set, error) {
	rs, err := ParseFile(path, opts)
	if err != nil {
		return nil, err
	}
	return &Set{rules: rs}, nil
}

// Len returns the number of rules.
func (s *Set) Len() int { return len(s.rules) }

// Match returns the first rule that in matches, or nil.
func (s *Set) Match(ctx context.Context, in *Input) *Rule {
	for _, r := range s.rules {
		if r.Matches(ctx, in) {
			return r
		}
	}
	return nil
}
