// Package loglevel names greymilter's log levels beyond slog's: Notice is
// what greymilter says without -v (start, listening, reload, shutdown);
// Trace (-vvv) is the most detailed, such as protocol exchanges.
package loglevel

import "log/slog"

const (
	Notice = slog.LevelInfo + 2
	Trace  = slog.LevelDebug - 4
)
