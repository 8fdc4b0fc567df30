package greylist

import (
	"context"
	"time"
)

// Store keeps greylisting state. Implementations must make Attempt atomic
// (no two attempts of one triplet interleave) and durable once it returns.
type Store interface {
	// Attempt applies rules to an attempt of key at now and returns the
	// result once it is committed. A triplet's first pass also counts
	// towards its client's auto-whitelist, in the same transaction,
	// unless rules.NoClientPasses.
	Attempt(ctx context.Context, key Key, rules Rules, now time.Time) (Result, error)
	// Lookup returns the stored record of a triplet.
	Lookup(ctx context.Context, key Key) (Record, bool, error)
	// Client returns what is known of a client (subnet or identity).
	Client(ctx context.Context, client string) (ClientRecord, bool, error)
	// Touch records that a known triplet and its client were seen at now.
	// It may be applied later and may be lost in a crash: it only keeps
	// live entries from being purged.
	Touch(key Key, now time.Time)
	// Purge forgets what rules say has expired at now. It works in small
	// transactions so that decisions are not held up.
	Purge(ctx context.Context, rules Rules, now time.Time) (PurgeStats, error)
	// Close flushes pending work and closes the store.
	Close() error
}

// ClientRecord is what is remembered of a client for auto-whitelisting.
type ClientRecord struct {
	Passes   int // distinct triplets of this client that passed greylisting
	LastSeen time.Time
}

// PurgeStats says what a purge removed.
type PurgeStats struct {
	Triplets, Unverified, Clients int
}
