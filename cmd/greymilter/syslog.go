package main

import (
	"context"
	"fmt"
	"log/slog"
	"log/syslog"
)

// newSyslogHandler logs to the local syslog daemon with the mail facility,
// where mail administrators look first. Each slog level goes out at the
// matching syslog priority; syslog stamps the time itself.
// An empty network and raddr mean the local daemon.
func newSyslogHandler(network, raddr, tag string, opts *slog.HandlerOptions, json bool) (slog.Handler, error) {
	w, err := syslog.Dial(network, raddr, syslog.LOG_MAIL|syslog.LOG_INFO, tag)
	if err != nil {
		return nil, fmt.Errorf("--log-target syslog: %w", err)
	}
	o := *opts
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
			return slog.Attr{}
		}
		return a
	}
	newHandler := func(write func(string) error) slog.Handler {
		out := syslogWriter(write)
		if json {
			return slog.NewJSONHandler(out, &o)
		}
		return slog.NewTextHandler(out, &o)
	}
	return &syslogHandler{
		level:  opts.Level,
		debug:  newHandler(w.Debug),
		info:   newHandler(w.Info),
		notice: newHandler(w.Notice),
		warn:   newHandler(w.Warning),
		err:    newHandler(w.Err),
	}, nil
}

type syslogWriter func(string) error

func (w syslogWriter) Write(p []byte) (int, error) {
	if err := w(string(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

type syslogHandler struct {
	level                          slog.Leveler
	debug, info, notice, warn, err slog.Handler
}

func (h *syslogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case r.Level >= slog.LevelError:
		return h.err.Handle(ctx, r)
	case r.Level >= slog.LevelWarn:
		return h.warn.Handle(ctx, r)
	case r.Level >= levelNotice:
		return h.notice.Handle(ctx, r)
	case r.Level >= slog.LevelInfo:
		return h.info.Handle(ctx, r)
	}
	return h.debug.Handle(ctx, r)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{h.level, h.debug.WithAttrs(as), h.info.WithAttrs(as), h.notice.WithAttrs(as), h.warn.WithAttrs(as), h.err.WithAttrs(as)}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{h.level, h.debug.WithGroup(name), h.info.WithGroup(name), h.notice.WithGroup(name), h.warn.WithGroup(name), h.err.WithGroup(name)}
}
