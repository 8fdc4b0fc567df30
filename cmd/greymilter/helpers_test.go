package main

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
)

// syncBuffer is a log buffer that the app's goroutines may write to while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits up to 10 seconds for the log to satisfy ok.
func (b *syncBuffer) waitFor(t *testing.T, ok func(string) bool) bool {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok(b.String()) {
			return true
		}
	}
	return false
}

// testLogging logs everything, debug included, into a buffer.
func testLogging() (*logging, *syncBuffer) {
	var buf syncBuffer
	return &logging{root: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}, &buf
}

// testConfig reads args as greymilter's command line (and the config file
// they name); any problem fails the test.
func testConfig(t *testing.T, args ...string) *config {
	t.Helper()
	cfg := newConfig()
	if err := cfg.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg.args = args
	if errs := cfg.load(); len(errs) > 0 {
		t.Fatal(errs)
	}
	return cfg
}

// testPipeline builds the pipeline of args on an in-memory store.
func testPipeline(t *testing.T, args ...string) (*pipeline, *syncBuffer) {
	t.Helper()
	cfg := testConfig(t, args...)
	logs, buf := testLogging()
	res, err := cfg.resolver.build(engine.SystemClock{}, logs.component("dns"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := greylist.Open(context.Background(), ":memory:", greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	p, err := newPipeline(cfg, logs, res, store)
	if err != nil {
		t.Fatal(err)
	}
	return p, buf
}

// engineOf runs the steps of p's given slots (all when none given).
func engineOf(p *pipeline, slots ...slot) *engine.Engine {
	var steps []engine.Step
	if len(slots) == 0 {
		steps = p.compiled.Steps
	}
	for _, s := range slots {
		steps = append(steps, p.steps[s]...)
	}
	return engine.New(engine.Options{Logger: slog.New(slog.DiscardHandler)}, steps...)
}

// testApp builds the whole app of args, as the daemon does before it
// serves; it is closed when the test ends.
func testApp(t *testing.T, args ...string) (*app, *syncBuffer, error) {
	t.Helper()
	cfg := testConfig(t, args...)
	logs, buf := testLogging()
	a, err := build(context.Background(), cfg, logs)
	if a != nil {
		t.Cleanup(func() {
			a.stopMaintenance()
			a.close()
		})
	}
	return a, buf, err
}
