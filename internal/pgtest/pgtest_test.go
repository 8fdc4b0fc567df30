package pgtest

import (
	"context"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// TestServerLifecycle: a database is usable; a frozen server holds a query
// until thawed; a stopped one refuses, and starts again with its data.
func TestServerLifecycle(t *testing.T) {
	s := New(t)
	dsn := s.NewDatabase(t)
	ctx := context.Background()
	if err := Exec(ctx, dsn, "CREATE TABLE x (v int); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := Exec(short, dsn, "SELECT 1")
	cancel()
	if err == nil {
		t.Fatal("a frozen server answered")
	}
	if err := s.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := Exec(ctx, dsn, "SELECT 1"); err != nil {
		t.Fatalf("after thaw: %v", err)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := Exec(ctx, dsn, "SELECT 1"); err == nil {
		t.Fatal("a stopped server answered")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := Exec(ctx, dsn, "INSERT INTO x SELECT v + 1 FROM x"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestSharedIsShared(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatal("two shared servers")
	}
	if a.NewDatabase(t) == b.NewDatabase(t) {
		t.Fatal("two new databases share a name")
	}
}
