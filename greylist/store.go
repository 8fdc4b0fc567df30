package greylist

import (
	"context"
	"errors"
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
	// NeverRetried are the unverified triplets that had one attempt only.
	NeverRetried int
}

// ErrClosed is returned by a store that has been closed.
var ErrClosed = errors.New("greylist: store closed")

// CountsMaxAge is how long hourly decision counts are kept.
const CountsMaxAge = 400 * 24 * time.Hour

// Count is the number of decisions of one action and reason in one hour.
type Count struct {
	Hour           time.Time // start of the hour, UTC
	Action, Reason string
	N              int64
}

// Counter is a Store that also keeps hourly decision counts, for
// `greymilter stats`.
type Counter interface {
	// AddCounts adds counts to what is stored.
	AddCounts(ctx context.Context, counts []Count) error
	// Counts returns the hourly counts from since on, oldest first.
	Counts(ctx context.Context, since time.Time) ([]Count, error)
}

// Summary is what a store holds.
type Summary struct {
	Triplets, Passed, Clients, AutoWhitelisted int64
}

// Summarizer is a Store that can count its contents.
type Summarizer interface {
	// Summary counts the store's contents; autoWhitelist is the number
	// of passes that makes a client auto-whitelisted.
	Summary(ctx context.Context, autoWhitelist int) (Summary, error)
}

// Health is a Store on a database server, which may be unreachable.
type Health interface {
	// Available tells whether the last operation reached the database.
	Available() bool
	// Failures counts the operations that failed for want of it.
	Failures() int64
}

// ErrCorrupt marks a database that is damaged: greymilter will not use it
// as it is (see --db-recover).
var ErrCorrupt = errors.New("database is damaged")

// ErrUnwritable marks a database that cannot be written at start.
var ErrUnwritable = errors.New("database cannot be written")
