package listener

import (
	"net"
	"sync"
	"sync/atomic"
)

// Set is the listeners a server is serving, closed together by its
// shutdown: a front end's Serve adds its listener and removes it when it
// returns, Shutdown calls Close. The zero Set is ready to use.
type Set struct {
	closed atomic.Bool
	mu     sync.Mutex
	lns    map[net.Listener]struct{}
}

// Add adds ln to the set. On a closed set it closes ln instead and
// reports false: the server must not serve it.
func (s *Set) Add(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		ln.Close()
		return false
	}
	if s.lns == nil {
		s.lns = make(map[net.Listener]struct{})
	}
	s.lns[ln] = struct{}{}
	return true
}

// Remove takes ln out of the set (it does not close it).
func (s *Set) Remove(ln net.Listener) {
	s.mu.Lock()
	delete(s.lns, ln)
	s.mu.Unlock()
}

// Close closes every listener of the set, and every one added later.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed.Store(true)
	for ln := range s.lns {
		ln.Close()
	}
}

// Closed reports whether Close was called.
func (s *Set) Closed() bool { return s.closed.Load() }
