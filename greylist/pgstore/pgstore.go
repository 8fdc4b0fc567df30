// Package pgstore keeps greylisting state in PostgreSQL, so that several MX
// hosts share one greylist: a sender deferred at one host passes at
// another once its delay is over.
//
// Every decision reads the database (other hosts write too); only passed
// triplets and auto-whitelisted clients are cached here, for a bounded
// time, since they stay good. An attempt is decided by greylist's rules
// in Go and written with a compare-and-set statement: the write only takes
// if the row is still what the rules saw (and otherwise the attempt is
// decided again under the row's lock), so that two hosts deciding on one
// triplet at the same instant never both count as its first attempt and
// never write two rows. Every operation is bounded by a timeout, so that a
// stopped or hung server costs a decision that timeout at most.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/greymilter/greymilter/greylist"
)

// PostgreSQL takes postgres:// and postgresql:// URLs, and libpq's
// key=value strings ("host=db1,db2 dbname=greylist ..."), which start with
// one of its connection keywords.
func init() {
	greylist.Register(greylist.Backend{
		Name:  "postgresql",
		Match: IsDSN,
		Open: func(ctx context.Context, dsn string, o greylist.Options) (greylist.Store, error) {
			return Open(ctx, dsn, o)
		},
	})
}

// IsDSN tells whether dsn names a PostgreSQL database.
func IsDSN(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return true
	}
	word, _, ok := strings.Cut(strings.TrimSpace(dsn), "=")
	if !ok {
		return false
	}
	switch strings.TrimSpace(word) {
	case "host", "hostaddr", "port", "dbname", "user", "password", "service", "sslmode", "connect_timeout", "target_session_attrs":
		return true
	}
	return false
}

// Defaults for what greylist.Options leaves at zero.
const (
	defaultTimeout  = time.Second
	defaultCacheTTL = 5 * time.Minute
	// defaultMaxConns is the pool's size unless the URL says
	// (pool_max_conns): enough for a busy MTA's concurrent decisions, few
	// enough for several hosts on one server.
	defaultMaxConns = 16
	// cacheEntries bounds each local cache.
	cacheEntries = 100_000
	// hintEntries bounds the records remembered between a decision's
	// lookup and its attempt.
	hintEntries = 8192
)

// Advisory lock keys (pg_advisory_lock takes any bigint; these spell
// "greymig" and "greypur" so that other users of the database are unlikely
// to take them).
const (
	lockMigrate int64 = 0x677265796d6967
	lockPurge   int64 = 0x67726579707572
)

// Store is a greylist.Store in PostgreSQL.
type Store struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	ttl     time.Duration
	awl     int
	log     *slog.Logger

	passed  *lru.Cache[key, cachedRecord] // passed triplets; nil without cache
	clients *lru.Cache[string, cachedClient]
	hints   *lru.Cache[key, hint] // what a lookup read, for the attempt after it

	reads        chan *stmt // for the batchers
	writes       chan *stmt
	batchersDone sync.WaitGroup
	touches      chan touch
	flush        chan chan struct{}
	quit         chan struct{}
	done         chan struct{}
	closing      sync.Once

	down      atomic.Bool  // the last operation found the database unavailable
	downSince atomic.Int64 // unix nanoseconds of the outage's first failure
	failures  atomic.Int64 // operations failed for want of the database

	admin adminState // admin.go
}

// Open connects to the database at dsn (a postgres:// URL or libpq
// key=value string, several hosts allowed), creates or migrates the schema,
// and returns the store.
// A negative o.CacheTTL turns the local cache off.
func Open(ctx context.Context, dsn string, o greylist.Options) (*Store, error) {
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = defaultCacheTTL
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx quotes the URL with its password redacted.
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	// A hung server accepts connections and never answers: without a
	// connect timeout a connection attempt would wait for TCP to give up.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = o.Timeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{
		pool: pool, timeout: o.Timeout, ttl: o.CacheTTL, awl: o.AutoWhitelist, log: o.Log,
		reads:   make(chan *stmt, maxBatch),
		writes:  make(chan *stmt, maxBatch),
		touches: make(chan touch, touchQueue),
		flush:   make(chan chan struct{}),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if s.ttl > 0 {
		s.passed, _ = lru.New[key, cachedRecord](cacheEntries)
		s.clients, _ = lru.New[string, cachedClient](cacheEntries)
	}
	s.hints, _ = lru.New[key, hint](hintEntries)
	if err := s.loadWhitelist(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	go s.toucher()
	for range batchers {
		s.batchersDone.Add(2)
		go s.batcher(s.reads)
		go s.batcher(s.writes)
	}
	return s, nil
}

// migrations are applied in order; greymilter_schema counts those done.
// The tables are SQLite's: times are unix milliseconds (0: never), hours
// unix hours.
var migrations = []string{
	`CREATE TABLE triplets (
		client     text NOT NULL,
		sender     text NOT NULL,
		recipient  text NOT NULL,
		first_seen bigint NOT NULL,
		last_seen  bigint NOT NULL,
		passed_at  bigint NOT NULL DEFAULT 0,
		attempts   integer NOT NULL DEFAULT 1,
		PRIMARY KEY (client, sender, recipient)
	);
	CREATE INDEX triplets_last_seen ON triplets (last_seen);
	CREATE INDEX triplets_unverified ON triplets (first_seen) WHERE passed_at = 0;
	CREATE TABLE clients (
		client    text PRIMARY KEY,
		passes    integer NOT NULL,
		last_seen bigint NOT NULL
	);
	CREATE INDEX clients_last_seen ON clients (last_seen);`,
	`CREATE TABLE decision_counts (
		hour   bigint NOT NULL,
		action text NOT NULL,
		reason text NOT NULL,
		n      bigint NOT NULL,
		PRIMARY KEY (hour, action, reason)
	);`,
	// Runtime whitelist entries (greymilter db whitelist).
	`CREATE TABLE whitelist (
		network text PRIMARY KEY, -- CIDR
		added   bigint NOT NULL,
		expires bigint NOT NULL DEFAULT 0, -- 0: never
		note    text NOT NULL DEFAULT ''
	);`,
	// meta: named values about the database itself, such as whether its
	// keys are private (greylist.Meta).
	`CREATE TABLE meta (
		name  text PRIMARY KEY,
		value text NOT NULL
	);`,
	// slow_retriers: clients that retried a sender domain's mail after
	// the retry window, and whether its mail then passed from them
	// (greylist.SlowRetryStore).
	`CREATE TABLE slow_retriers (
		domain    text NOT NULL,
		client    text NOT NULL,
		late_at   bigint NOT NULL,
		passed_at bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (domain, client)
	);`,
}

// migrate brings the schema up to date in one transaction, under an
// advisory lock so that hosts starting together take turns.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockMigrate); err != nil {
		return fmt.Errorf("pgstore: migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS greymilter_schema (version integer NOT NULL)`); err != nil {
		return fmt.Errorf("pgstore: schema version table: %w", err)
	}
	var version int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM greymilter_schema`).Scan(&version); err != nil {
		return fmt.Errorf("pgstore: reading schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("pgstore: schema version %d is newer than this greymilter knows (%d)", version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return fmt.Errorf("pgstore: migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM greymilter_schema`); err != nil {
		return fmt.Errorf("pgstore: schema version: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO greymilter_schema (version) VALUES ($1)`, len(migrations)); err != nil {
		return fmt.Errorf("pgstore: schema version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: migrations: %w", err)
	}
	return nil
}

// bound gives an operation its deadline.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// result notes whether an operation reached the database: the first
// failure of an outage is logged, and the first success after one. It
// returns err.
func (s *Store) result(err error) error {
	if err == nil {
		if s.down.Load() && s.down.CompareAndSwap(true, false) {
			s.log.Info("database back", "outage", time.Since(time.Unix(0, s.downSince.Load())).Round(time.Millisecond))
		}
		return nil
	}
	if !unavailable(err) {
		return err
	}
	s.failures.Add(1)
	if s.down.CompareAndSwap(false, true) {
		s.downSince.Store(time.Now().UnixNano())
		s.log.Error("database unavailable", "err", err)
	}
	return err
}

// unavailable tells whether err says the database could not be reached
// or did not answer in time, rather than that it refused a statement.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // the caller gave up
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Connection exceptions, operator intervention (shutdown),
		// insufficient resources (too many connections).
		class := pe.Code[:min(2, len(pe.Code))]
		return class == "08" || class == "57" || class == "53"
	}
	return true
}

// Failures returns how many operations failed for want of the database.
func (s *Store) Failures() int64 { return s.failures.Load() }

// Available tells whether the last operation reached the database.
func (s *Store) Available() bool { return !s.down.Load() }

// Close writes the touches queued and closes the connections.
func (s *Store) Close() error {
	s.closing.Do(func() {
		close(s.quit)
		<-s.done
		s.batchersDone.Wait()
		s.pool.Close()
	})
	return nil
}
