// Package duration reads the durations an operator writes, in flags and in
// the rules file alike: plain seconds ("300", as postgrey's --delay), days
// ("35d") or a Go duration ("5m", "1h30m").
package duration

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parse reads "300" (seconds), "35d" (days) or a Go duration. Negative
// durations are refused.
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad duration %q: want seconds, a number of days like 35d, or a Go duration like 5m", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: want seconds, a number of days like 35d, or a Go duration like 5m", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return v, nil
}
