package greylist

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Options configure a store opened with Open. A backend uses what applies
// to it.
type Options struct {
	// Timeout bounds one store operation on a backend that can hang
	// (a database server); 0 leaves it to the caller's context.
	Timeout time.Duration
	// CacheTTL is how long a shared store's local cache trusts a passed
	// triplet or an auto-whitelisted client.
	CacheTTL time.Duration
	// AutoWhitelist is the passes that make a client auto-whitelisted (0:
	// off), the only clients a shared store's cache keeps.
	AutoWhitelist int
	Log           *slog.Logger
	// WriteTest makes a backend prove at start that it can write (the
	// daemon asks; a reader such as `greymilter stats` need not).
	WriteTest bool
	// Recover lets a backend that finds its database damaged move it
	// aside and start afresh with what it can still read (--db-recover).
	Recover bool
}

// Backend opens the stores whose DSN it recognises.
type Backend struct {
	Name  string
	Match func(dsn string) bool
	Open  func(ctx context.Context, dsn string, o Options) (Store, error)
}

var (
	backendsMu sync.RWMutex
	backends   []Backend
)

// Register makes a backend known to Open; backends call it from init,
// as database/sql drivers do, so that greylist imports none of them.
func Register(b Backend) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	backends = append(backends, b)
}

// Open opens the store named by dsn with the first registered backend
// that recognises it.
func Open(ctx context.Context, dsn string, o Options) (Store, error) {
	backendsMu.RLock()
	defer backendsMu.RUnlock()
	var names []string
	for _, b := range backends {
		if b.Match(dsn) {
			s, err := b.Open(ctx, dsn, o)
			if err != nil {
				return nil, fmt.Errorf("greylist: %s store: %w", b.Name, err)
			}
			return s, nil
		}
		names = append(names, b.Name)
	}
	return nil, fmt.Errorf("greylist: no store backend for %q (have: %s)", dsn, strings.Join(names, ", "))
}
