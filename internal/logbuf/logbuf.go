// Package logbuf batches log lines into fewer writes: a line waits at most
// a few milliseconds in memory, so that a busy server writes its decision
// lines in one write(2) per interval rather than one per decision, while a
// warning or error still goes out at once.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// maxBuffered is what a Writer keeps before it writes at once, however
// recent the first line: a burst costs a bounded amount of memory.
const maxBuffered = 64 << 10

// Writer buffers what is written to it and writes it to the underlying
// writer within an interval of the first unwritten byte, on Flush, and on
// Close. It is safe for concurrent use; writes keep their order.
type Writer struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	every time.Duration
	timer *time.Timer
	err   error // the last error of the underlying writer, reported once
}

// New returns a Writer in front of w that writes within every of a line.
func New(w io.Writer, every time.Duration) *Writer {
	b := &Writer{w: w, every: every, buf: make([]byte, 0, 4096)}
	b.timer = time.AfterFunc(time.Hour, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write buffers p. The error is the one a previous write to the
// underlying writer met, if any: log lines have nowhere else to report it.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) == 0 {
		b.timer.Reset(b.every)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= maxBuffered {
		b.flushLocked()
	}
	err := b.err
	b.err = nil
	return len(p), err
}

// Flush writes what is buffered now.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	err := b.err
	b.err = nil
	return err
}

func (b *Writer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	b.timer.Stop()
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}

// Close writes what is buffered; later writes are still accepted and
// written within the interval.
func (b *Writer) Close() error {
	return b.Flush()
}

// Handler returns h, whose output goes to b, with b flushed after every
// record at level or above: a warning or an error is seen at once, and so
// are the lines before it.
func (b *Writer) Handler(h slog.Handler, level slog.Level) slog.Handler {
	return urgentHandler{Handler: h, w: b, level: level}
}

type urgentHandler struct {
	slog.Handler
	w     *Writer
	level slog.Level
}

func (h urgentHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.level {
		h.w.Flush()
	}
	return err
}

func (h urgentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return urgentHandler{Handler: h.Handler.WithAttrs(as), w: h.w, level: h.level}
}

func (h urgentHandler) WithGroup(name string) slog.Handler {
	return urgentHandler{Handler: h.Handler.WithGroup(name), w: h.w, level: h.level}
}
