package main

import (
	"context"
	"strings"
	"testing"

	"github.com/greymilter/greymilter/greylist"
)

// TestDBPicksTheBackend: with both backends linked in, --db chooses by its
// form: libpq's key=value strings (which hold no "://", as file paths do
// not) go to PostgreSQL, not to a SQLite file of that name.
func TestDBPicksTheBackend(t *testing.T) {
	for _, dsn := range []string{
		"host=127.0.0.1 port=1 dbname=greylist sslmode=disable connect_timeout=1",
		"postgresql://127.0.0.1:1/greylist?sslmode=disable&connect_timeout=1",
	} {
		_, err := greylist.Open(context.Background(), dsn, greylist.Options{})
		if err == nil || !strings.Contains(err.Error(), "postgresql store") {
			t.Errorf("--db %q: %v, want the PostgreSQL store's connection error", dsn, err)
		}
	}
	s, err := greylist.Open(context.Background(), ":memory:", greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
