package logbuf

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter records what reaches the underlying writer, and in how
// many writes.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) state() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

func TestInfoLinesGoOutTogetherWithinTheInterval(t *testing.T) {
	var out countingWriter
	b := New(&out, 50*time.Millisecond)
	log := slog.New(b.Handler(slog.NewTextHandler(b, nil), slog.LevelWarn))
	for i := 0; i < 100; i++ {
		log.Info("decision", "n", i)
	}
	if s, _ := out.state(); s != "" {
		t.Fatalf("info lines written before the interval: %q", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, writes := out.state()
		if strings.Count(s, "msg=decision") == 100 {
			if writes != 1 {
				t.Fatalf("100 lines in %d writes, want 1", writes)
			}
			if !strings.HasPrefix(s[strings.Index(s, "n=")-1:], " n=0\n") || !strings.HasSuffix(s, "n=99\n") {
				t.Fatalf("lines out of order or cut: %q", s)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("buffered lines not written 5s after: %q", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWarningGoesOutAtOnceWithWhatCameBefore(t *testing.T) {
	var out countingWriter
	b := New(&out, time.Hour)
	log := slog.New(b.Handler(slog.NewTextHandler(b, nil), slog.LevelWarn)).With("filter", "greymilter")
	log.Info("decision")
	log.Warn("store failing")
	s, _ := out.state()
	if !strings.Contains(s, "msg=decision") || !strings.Contains(s, `msg="store failing" filter=greymilter`) {
		t.Fatalf("after a warning: %q", s)
	}
}

func TestCloseWritesWhatIsBuffered(t *testing.T) {
	var out countingWriter
	b := New(&out, time.Hour)
	b.Write([]byte("last line\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if s, _ := out.state(); s != "last line\n" {
		t.Fatalf("after Close: %q", s)
	}
}

func TestLargeBurstIsWrittenWithoutWaiting(t *testing.T) {
	var out countingWriter
	b := New(&out, time.Hour)
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for i := 0; i < maxBuffered/len(line); i++ {
		b.Write(line)
	}
	if s, _ := out.state(); len(s) != maxBuffered {
		t.Fatalf("%d bytes written after %d buffered, want all", len(s), maxBuffered)
	}
}

func TestWriteErrorIsReported(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // writes to a closed file fail
	b := New(f, time.Hour)
	b.Write([]byte("lost\n"))
	if err := b.Flush(); err == nil {
		t.Fatal("a failed write reported no error")
	}
}
