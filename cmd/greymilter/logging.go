package main

import (
	"io"
	"log/slog"
	"time"

	"github.com/greymilter/greymilter/internal/logbuf"
	"github.com/greymilter/greymilter/internal/loglevel"
)

// The levels beyond slog's (internal/loglevel).
const (
	levelNotice = loglevel.Notice
	levelTrace  = loglevel.Trace
)

// verbosityLevel maps the count of -v to the lowest level logged:
// none: notices and problems; -v: one line per decision; -vv: each step's
// result and DNS answers; -vvv: trace.
func verbosityLevel(verbose int) slog.Level {
	switch {
	case verbose <= 0:
		return levelNotice
	case verbose == 1:
		return slog.LevelInfo
	case verbose == 2:
		return slog.LevelDebug
	}
	return levelTrace
}

// levelNames names the extra levels in log lines.
func levelNames(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 || a.Key != slog.LevelKey {
		return a
	}
	switch a.Value.Any().(slog.Level) {
	case levelNotice:
		a.Value = slog.StringValue("NOTICE")
	case levelTrace:
		a.Value = slog.StringValue("TRACE")
	}
	return a
}

// logging is greymilter's logger; each component logs through its own,
// marked component=NAME.
type logging struct {
	root *slog.Logger
	out  *logbuf.Writer // nil with syslog
}

// logFlushEvery is the longest a line under notice level (a decision's,
// with -v) waits in memory before it is written: a busy server writes its
// decision lines in one write(2) per interval, not one per decision.
// Notices, warnings and errors go out at once.
const logFlushEvery = 5 * time.Millisecond

// newLogging logs to w (to syslog with --log-target syslog), through a
// buffer flushed within logFlushEvery, at once after a notice or worse, and
// by close.
func newLogging(c *coreFlags, w io.Writer) (*logging, error) {
	opts := &slog.HandlerOptions{Level: verbosityLevel(c.verbose), ReplaceAttr: levelNames}
	var h slog.Handler
	var out *logbuf.Writer
	switch {
	case c.logTarget == "syslog":
		var err error
		if h, err = newSyslogHandler("", "", c.name, opts, c.logFormat == "json"); err != nil {
			return nil, err
		}
	case c.logFormat == "json":
		out = logbuf.New(w, logFlushEvery)
		h = out.Handler(slog.NewJSONHandler(out, opts), levelNotice)
	default:
		out = logbuf.New(w, logFlushEvery)
		h = out.Handler(slog.NewTextHandler(out, opts), levelNotice)
	}
	return &logging{root: slog.New(h).With("filter", c.name), out: out}, nil
}

// close writes what is buffered.
func (l *logging) close() {
	if l.out != nil {
		l.out.Close()
	}
}

// component returns the logger of one part of greymilter: main, milter,
// policy, engine, store, dns, lists, checks, stats.
func (l *logging) component(name string) *slog.Logger {
	return l.root.With("component", name)
}
