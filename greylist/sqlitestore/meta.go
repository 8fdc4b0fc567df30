package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Meta returns a named value about the database (greylist.Meta).
func (s *Store) Meta(ctx context.Context, name string) (string, bool, error) {
	var value string
	err := s.read(ctx, func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, name).Scan(&value)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("greylist: meta %s: %w", name, err)
	}
	return value, true, nil
}

// SetMeta sets a named value about the database; "" removes it.
func (s *Store) SetMeta(ctx context.Context, name, value string) error {
	err := s.do(ctx, func(c *sql.Conn) error {
		if value == "" {
			_, err := c.ExecContext(ctx, `DELETE FROM meta WHERE name = ?`, name)
			return err
		}
		_, err := c.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("greylist: set meta %s: %w", name, err)
	}
	return nil
}

// erasedTables are what Erase empties: everything that names a client,
// a sender or a recipient.
var erasedTables = []string{"triplets", "clients", "slow_retriers"}

// Erase deletes every triplet and client (greylist.Eraser). The in-memory
// index is not updated: the store must be closed and opened again.
//
// The pages freed are overwritten with zeros (secure_delete), so that the
// file keeps nothing of what it held: Erase is how plain addresses leave a
// database that becomes private.
func (s *Store) Erase(ctx context.Context) error {
	err := s.do(ctx, func(c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, "PRAGMA secure_delete = ON"); err != nil {
			return err
		}
		defer c.ExecContext(ctx, "PRAGMA secure_delete = OFF")
		for _, t := range erasedTables {
			if _, err := c.ExecContext(ctx, "DELETE FROM "+t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("greylist: erase: %w", err)
	}
	return nil
}
