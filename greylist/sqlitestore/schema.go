package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// migrations are applied in order; PRAGMA user_version counts those done.
var migrations = []string{
	`CREATE TABLE triplets (
		client     TEXT NOT NULL,
		sender     TEXT NOT NULL,
		recipient  TEXT NOT NULL,
		first_seen INTEGER NOT NULL, -- unix milliseconds
		last_seen  INTEGER NOT NULL,
		passed_at  INTEGER NOT NULL DEFAULT 0,
		attempts   INTEGER NOT NULL DEFAULT 1,
		PRIMARY KEY (client, sender, recipient)
	) WITHOUT ROWID;
	CREATE INDEX triplets_last_seen ON triplets (last_seen);
	CREATE INDEX triplets_unverified ON triplets (first_seen) WHERE passed_at = 0;
	CREATE TABLE clients (
		client    TEXT PRIMARY KEY,
		passes    INTEGER NOT NULL,
		last_seen INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX clients_last_seen ON clients (last_seen);`,
	`CREATE TABLE decision_counts (
		hour   INTEGER NOT NULL, -- unix hour
		action TEXT NOT NULL,
		reason TEXT NOT NULL,
		n      INTEGER NOT NULL,
		PRIMARY KEY (hour, action, reason)
	) WITHOUT ROWID;`,
	// Runtime whitelist entries (greymilter db whitelist).
	`CREATE TABLE whitelist (
		network TEXT PRIMARY KEY, -- CIDR
		added   INTEGER NOT NULL, -- unix milliseconds
		expires INTEGER NOT NULL DEFAULT 0, -- 0: never
		note    TEXT NOT NULL DEFAULT ''
	) WITHOUT ROWID;`,
	// meta: named values about the database itself, such as whether its
	// keys are private (greylist.Meta).
	`CREATE TABLE meta (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	) WITHOUT ROWID;`,
	// slow_retriers: clients that retried a sender domain's mail after
	// the retry window, and whether its mail then passed from them
	// (greylist.SlowRetryStore).
	`CREATE TABLE slow_retriers (
		domain    TEXT NOT NULL,
		client    TEXT NOT NULL,
		late_at   INTEGER NOT NULL, -- unix milliseconds
		passed_at INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (domain, client)
	) WITHOUT ROWID;`,
	// No index on the times of triplets and clients: every attempt
	// rewrites a triplet's last_seen and every pass a client's, and each
	// index entry that moves dirties more pages that every commit writes
	// to the WAL (dropping them raised decisions/s by a quarter to a
	// third). Decisions never need them: reads are answered by the index
	// in memory (index.go) and writes go by primary key. The purge, which
	// used them, walks the primary keys instead (purge.go).
	`DROP INDEX IF EXISTS triplets_last_seen;
	DROP INDEX IF EXISTS triplets_unverified;
	DROP INDEX IF EXISTS clients_last_seen;`,
}

func migrate(db *sql.Conn) error {
	ctx := context.Background()
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this greymilter knows (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}
