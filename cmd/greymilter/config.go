package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// config is one reading of greymilter's configuration: the command line,
// then the config file for what the command line leaves unset. Each
// reading has its own flag values, so a reload can build a whole new
// pipeline beside the one in force.
type config struct {
	fs         *pflag.FlagSet
	core       coreFlags
	privileges privilegeFlags
	front      frontFlags
	resolver   resolverFlags
	modules    []module
	// args is the command line, read again for every reload.
	args []string
	// origin says where the config file set a flag: "FILE:LINE".
	origin map[string]string
	// sections group the flags for the documentation.
	sections []flagSection
}

// newConfig defines every flag: the core's, the resolver's, then each
// module's.
func newConfig() *config {
	c := &config{origin: map[string]string{}}
	c.fs = pflag.NewFlagSet("greymilter", pflag.ContinueOnError)
	c.fs.SortFlags = false
	c.fs.SetOutput(io.Discard)
	c.section("Milter, greylisting and store", c.core.add)
	c.section("Privileges", c.privileges.add)
	c.section("Front-end limits", c.front.add)
	c.section("DNS resolver", c.resolver.add)
	for _, mt := range moduleTypes {
		m := mt.new()
		c.section(mt.title, m.addFlags)
		c.modules = append(c.modules, m)
	}
	return c
}

// flagSection is a group of options under one title, in the generated
// example configuration and man page.
type flagSection struct {
	title string
	flags []*pflag.Flag
}

// section defines flags with add and notes them under title.
func (c *config) section(title string, add func(*pflag.FlagSet)) {
	before := map[string]bool{}
	c.fs.VisitAll(func(f *pflag.Flag) { before[f.Name] = true })
	add(c.fs)
	s := flagSection{title: title}
	c.fs.VisitAll(func(f *pflag.Flag) {
		if !before[f.Name] {
			s.flags = append(s.flags, f)
		}
	})
	c.sections = append(c.sections, s)
}

// parseArgs reads the command line. done means the command is over (help,
// version, a bad flag) and code is its exit status.
func (c *config) parseArgs(args []string, stdout, stderr io.Writer) (code int, done bool) {
	c.args = args
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			writeUsage(stdout, c.fs)
			return 0, true
		}
		fmt.Fprintf(stderr, "greymilter: %v\n", err)
		return exitUsage, true
	}
	if c.core.showVersion {
		fmt.Fprintf(stdout, "greymilter %s\n", version)
		return 0, true
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "greymilter: unexpected argument %q\n", c.fs.Arg(0))
		return exitUsage, true
	}
	return 0, false
}

// load reads the config file, if any, and checks every flag value. It
// returns every problem found, not only the first.
func (c *config) load() []error {
	var errs []error
	if c.core.config != "" {
		errs = applyConfigFile(c.fs, c.core.config, c.origin)
	}
	errs = append(errs, flatten(c.check())...)
	return errs
}

// check checks the values of every flag, without reading files.
func (c *config) check() error {
	errs := []error{c.core.check(), c.front.check(), c.resolver.check()}
	if d := c.core.decisionTimeout; d > 0 && c.resolver.timeout > d/2 {
		errs = append(errs, flagErrorf("dns-timeout", "--dns-timeout %v: at most half of --decision-timeout %v, so that the store keeps its own time after DNS", c.resolver.timeout, d))
	}
	for _, m := range c.modules {
		errs = append(errs, m.check())
	}
	return errors.Join(errs...)
}

// describe writes a problem for the operator: when the config file set
// the flag it is about, its FILE:LINE comes first.
func (c *config) describe(err error) string {
	var fe *flagError
	if errors.As(err, &fe) {
		if where, ok := c.origin[fe.flag]; ok {
			return where + ": " + err.Error()
		}
	}
	return err.Error()
}

// flagError is a bad value of one flag.
type flagError struct {
	flag string
	err  error
}

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// flagErrorf reports a bad value of flag (its long name); the message names
// the flag itself.
func flagErrorf(flag, format string, args ...any) error {
	return &flagError{flag: flag, err: fmt.Errorf(format, args...)}
}

// flatten lists the errors that errors.Join put together, one by one.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// reloadKey marks the flags whose new value a reload (SIGHUP) puts in
// force; a change of any other flag needs a restart.
const reloadKey = "greymilter-reloadable"

// reloadable marks flags as changeable at runtime.
func reloadable(fs *pflag.FlagSet, names ...string) {
	for _, n := range names {
		if err := fs.SetAnnotation(n, reloadKey, []string{"true"}); err != nil {
			panic(err) // a misspelt flag name: a programming error
		}
	}
}

func isReloadable(f *pflag.Flag) bool {
	_, ok := f.Annotations[reloadKey]
	return ok
}

// commandLineOnly are flags that make no sense in the config file.
var commandLineOnly = map[string]bool{"config": true, "version": true, "check-config": true}

// applyConfigFile sets, from a file of "key = value" lines, every flag that
// was not given on the command line, and notes in origin the FILE:LINE
// that set each. Keys are the long flag names; a repeatable flag may appear
// on several lines; "#" starts a comment; a boolean flag may stand alone.
// The command line wins. It returns every bad line, each as
// "FILE:LINE: what is wrong".
func applyConfigFile(fs *pflag.FlagSet, path string, origin map[string]string) []error {
	f, err := os.Open(path)
	if err != nil {
		return []error{fmt.Errorf("--config: %w", err)}
	}
	defer f.Close()
	onCommandLine := map[string]bool{}
	fs.Visit(func(fl *pflag.Flag) { onCommandLine[fl.Name] = true })

	var errs []error
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, n)
		key, value, hasValue := strings.Cut(line, "=")
		key = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(key), "--"))
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' && value[len(value)-1] == '"' || value[0] == '\'' && value[len(value)-1] == '\'') {
			value = value[1 : len(value)-1]
		}
		fl := fs.Lookup(key)
		if fl == nil || commandLineOnly[key] {
			errs = append(errs, fmt.Errorf("%s: unknown option %q", where, key))
			continue
		}
		if !hasValue {
			if fl.NoOptDefVal == "" {
				errs = append(errs, fmt.Errorf("%s: option %q needs a value (%s = ...)", where, key, key))
				continue
			}
			value = fl.NoOptDefVal
		}
		if onCommandLine[fl.Name] {
			continue
		}
		if err := fs.Set(fl.Name, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, key, err))
			continue
		}
		origin[fl.Name] = where
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	return errs
}
