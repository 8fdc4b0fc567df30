package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// applyConfigFile sets, from a file of "key = value" lines, every flag that
// was not given on the command line. Keys are the long flag names; a
// repeatable flag may appear on several lines; "#" starts a comment; a
// boolean flag may stand alone. The command line wins.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	onCommandLine := map[string]bool{}
	fs.Visit(func(fl *pflag.Flag) { onCommandLine[fl.Name] = true })

	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, hasValue := strings.Cut(line, "=")
		key = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(key), "--"))
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' && value[len(value)-1] == '"' || value[0] == '\'' && value[len(value)-1] == '\'') {
			value = value[1 : len(value)-1]
		}
		fl := fs.Lookup(key)
		if fl == nil || key == "config" {
			return fmt.Errorf("config: %s:%d: unknown option %q", path, n, key)
		}
		if !hasValue {
			if fl.NoOptDefVal == "" {
				return fmt.Errorf("config: %s:%d: option %q needs a value (%s = ...)", path, n, key, key)
			}
			value = fl.NoOptDefVal
		}
		if onCommandLine[fl.Name] {
			continue
		}
		if err := fs.Set(fl.Name, value); err != nil {
			return fmt.Errorf("config: %s:%d: %s: %w", path, n, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}
