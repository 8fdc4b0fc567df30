package main

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/greymilter/greymilter/internal/duration"
)

// durationValue is a pflag.Value for durations that also takes days
// ("35d") and, where the flag allows it, plain seconds ("300", as
// postgrey's --delay).
type durationValue struct {
	p            *time.Duration
	unitRequired bool
}

// newDuration is a duration flag where a plain number means seconds.
func newDuration(p *time.Duration, def time.Duration) *durationValue {
	*p = def
	return &durationValue{p: p}
}

// newLongDuration is a duration flag that wants a unit: for ages and
// windows a plain number is ambiguous (postgrey reads --max-age=35 as days,
// bley's purge_days too), and read as seconds it would purge everything.
func newLongDuration(p *time.Duration, def time.Duration) *durationValue {
	*p = def
	return &durationValue{p: p, unitRequired: true}
}

func (d *durationValue) Set(s string) error {
	if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && d.unitRequired && strings.TrimSpace(s) != "0" {
		return fmt.Errorf("%q has no unit: write days, hours or seconds (%sd, %sh, %ss)", s, s, s, s)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d.p = v
	return nil
}

func (d *durationValue) Type() string { return "duration" }

func (d *durationValue) String() string {
	if d.p == nil {
		return "0s"
	}
	v := *d.p
	if v != 0 && v%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", v/(24*time.Hour))
	}
	return v.String()
}

// parseDuration reads "300" (seconds), "35d" (days) or a Go duration.
func parseDuration(s string) (time.Duration, error) { return duration.Parse(s) }

// modeValue is a pflag.Value for an octal file mode such as 0660.
type modeValue fs.FileMode

func (m *modeValue) Set(s string) error {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("bad file mode %q: want octal permissions like 0660", s)
	}
	*m = modeValue(v)
	return nil
}

func (m *modeValue) Type() string   { return "mode" }
func (m *modeValue) String() string { return fmt.Sprintf("%#o", uint32(*m)) }

// choiceValue is a pflag.Value that takes one of a fixed set of words.
type choiceValue struct {
	value   *string
	choices []string
}

func newChoice(p *string, def string, choices ...string) *choiceValue {
	*p = def
	return &choiceValue{value: p, choices: choices}
}

func (c *choiceValue) Set(s string) error {
	for _, ch := range c.choices {
		if s == ch {
			*c.value = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(c.choices, ", "))
}

func (c *choiceValue) Type() string   { return strings.Join(c.choices, "|") }
func (c *choiceValue) String() string { return *c.value }
