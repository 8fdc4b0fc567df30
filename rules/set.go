package rules

import (
	"context"
	"sync"
	"sync/atomic"
)

// Set is the rules of one file in force. Match may be called from any
// number of goroutines, also while Reload runs: it sees either the old
// rules or the new ones.
type Set struct {
	path   string
	opts   Options
	reload sync.Mutex // one Reload at a time
	cur    atomic.Pointer[[]*Rule]
}

// Load reads the rules file at path.
func Load(path string, opts Options) (*Set, error) {
	s := &Set{path: path, opts: opts}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the file again; on error the old rules stay in force.
func (s *Set) Reload() error {
	s.reload.Lock()
	defer s.reload.Unlock()
	rules, err := ParseFile(s.path, s.opts)
	if err != nil {
		return err
	}
	s.cur.Store(&rules)
	return nil
}

// Len returns the number of rules in force.
func (s *Set) Len() int { return len(*s.cur.Load()) }

// Rules returns the rules in force, in file order.
func (s *Set) Rules() []*Rule { return *s.cur.Load() }

// Match returns the first rule that in matches, or nil.
func (s *Set) Match(ctx context.Context, in *Input) *Rule {
	for _, r := range *s.cur.Load() {
		if r.Matches(ctx, in) {
			return r
		}
	}
	return nil
}
