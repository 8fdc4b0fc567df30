package harness

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// LogRecord is one slog text line as key → value, quotes removed.
type LogRecord map[string]string

// ParseLogRecord parses a line written by slog's TextHandler
// (key=value key="quoted value" ...) or JSONHandler ({"key":value,...},
// values as text). It returns nil for a line that is not one.
func ParseLogRecord(line string) LogRecord {
	rec := LogRecord{}
	rest := strings.TrimSpace(line)
	if strings.HasPrefix(rest, "{") {
		var fields map[string]any
		if json.Unmarshal([]byte(rest), &fields) != nil {
			return nil
		}
		for k, v := range fields {
			rec[k] = fmt.Sprint(v)
		}
		return rec
	}
	for rest != "" {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \"") {
			return nil
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return nil
			}
			val, _ = strconv.Unquote(q)
			after = after[len(q):]
		} else {
			val, after, _ = strings.Cut(after, " ")
			after = " " + after
		}
		if after != "" && after[0] != ' ' {
			return nil
		}
		rec[key] = val
		rest = strings.TrimLeft(after, " ")
	}
	if len(rec) == 0 {
		return nil
	}
	return rec
}
