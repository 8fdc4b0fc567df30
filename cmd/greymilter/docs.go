package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// The example configuration (contrib/greymilter.conf, installed as
// /etc/greymilter/greymilter.conf) and the man page (contrib/greymilter.8)
// are generated from the flag definitions, so that every option appears
// in both with its default. `make generate` (go generate) writes them; a
// test fails when they are out of date.
//
//go:generate go test -run TestGeneratedFiles -update .

// packagedSettings are the options the installed configuration sets,
// beside the defaults, for the systemd unit and the Debian package.
var packagedSettings = []struct{ name, value, why string }{
	{"db", "/var/lib/greymilter/greymilter.db", "the unit's StateDirectory"},
	{"verbose", "1", "one line per decision, in the journal"},
}

// docDefaults replace defaults that depend on the machine the
// documentation is generated on.
var docDefaults = map[string]string{"hostname": "this host's name"}

// documented reports whether a flag belongs in the configuration file:
// not the command-line-only ones, nor aliases of another flag.
func documented(f *pflag.Flag) bool {
	return !commandLineOnly[f.Name] && !f.Hidden && !strings.HasPrefix(f.Usage, "same as --")
}

// configValue writes a flag's default as the config file takes it.
func configValue(f *pflag.Flag) string {
	if d, ok := docDefaults[f.Name]; ok {
		return "(" + d + ")"
	}
	v := f.DefValue
	if strings.HasSuffix(f.Value.Type(), "Slice") || strings.HasSuffix(f.Value.Type(), "Array") {
		v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	}
	return v
}

// writeExampleConfig writes the commented example configuration: every
// option with its help and default, commented out, except the packaged
// settings.
func writeExampleConfig(w io.Writer) {
	cfg := newConfig()
	fmt.Fprintf(w, "# greymilter configuration: one option a line, KEY = VALUE, with the long\n"+
		"# names of the command-line flags (greymilter --help, man 8 greymilter).\n"+
		"# A repeatable option may be given on several lines; the command line wins\n"+
		"# over this file. SIGHUP reloads it: what cannot change at runtime\n"+
		"# (sockets, database, logging) is logged as needing a restart.\n"+
		"# Check a change with: greymilter check-config --config FILE\n"+
		"#\n# Generated from the flag definitions (make generate); each option shows\n# its default.\n")
	packaged := map[string]string{}
	for _, s := range packagedSettings {
		packaged[s.name] = s.value
	}
	for _, sec := range cfg.sections {
		var flags []*pflag.Flag
		for _, f := range sec.flags {
			if documented(f) {
				flags = append(flags, f)
			}
		}
		if len(flags) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n## %s\n", sec.title)
		for _, f := range flags {
			fmt.Fprintf(w, "\n")
			for _, line := range wrap(f.Usage, 74) {
				fmt.Fprintf(w, "# %s\n", line)
			}
			if isReloadable(f) {
				fmt.Fprintf(w, "# (changes on SIGHUP)\n")
			}
			def := configValue(f)
			if v, ok := packaged[f.Name]; ok {
				fmt.Fprintf(w, "# default: %s\n%s = %s\n", orNone(def), f.Name, v)
				continue
			}
			fmt.Fprintf(w, "#%s = %s\n", f.Name, def)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// wrap cuts text into lines of at most width characters, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

// roff escapes text for a man page: backslashes, hyphens, and a dot or
// quote at the start of a line.
func roff(text string) string {
	text = strings.ReplaceAll(text, `\`, `\e`)
	text = strings.ReplaceAll(text, "-", `\-`)
	if strings.HasPrefix(text, ".") || strings.HasPrefix(text, "'") {
		text = `\&` + text
	}
	return text
}

// writeManPage writes greymilter(8) in roff.
func writeManPage(w io.Writer) {
	cfg := newConfig()
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p(`.\" Generated from greymilter's flag definitions (make generate); do not edit.`)
	p(`.TH GREYMILTER 8 "" "greymilter" "System Administration"`)
	p(".SH NAME")
	p(`greymilter \- greylisting milter and policy server for Postfix, Sendmail and Exim`)
	p(".SH SYNOPSIS")
	for _, c := range commands() {
		p(".B greymilter")
		p("%s", roff(c.synopsis))
		p(".br")
	}
	p(".SH DESCRIPTION")
	p("%s", roff("greymilter defers the first attempt of an unknown (client, sender, recipient) triplet with a temporary error and lets it through once the sender retries after the delay. "+
		"Real mail servers retry; most spam software does not. It answers Postfix and Sendmail as a milter and Postfix (or Exim) through the policy delegation protocol, "+
		"and can consult white and black lists, DNS allow and block lists, SPF and bley-style suspicion checks before greylisting."))
	p(".SH COMMANDS")
	for _, c := range commands() {
		p(".TP")
		p(`.B %s`, roff(c.name))
		p("%s (%s).", roff(c.summary), roff(c.daemon))
	}
	p(".SH OPTIONS")
	p("%s", roff("Every option can also be set in the configuration file named by --config, one KEY = VALUE a line with the long option name as key; the command line wins. "+
		"Durations are seconds (300), days (35d) or Go durations (5m, 1h30m)."))
	p(".TP")
	p(`.B \-\-config \fIFILE\fR`)
	p("%s", roff("Read options from FILE. Given on the command line only."))
	p(".TP")
	p(`.B \-\-check\-config`)
	p("%s", roff("Check the configuration as greymilter check-config does, and exit."))
	p(".TP")
	p(`.B \-h, \-\-help`)
	p("Print the usage on standard output and exit.")
	p(".TP")
	p(`.B \-\-version`)
	p("Print the version on standard output and exit.")
	for _, sec := range cfg.sections {
		var flags []*pflag.Flag
		for _, f := range sec.flags {
			if documented(f) {
				flags = append(flags, f)
			}
		}
		if len(flags) == 0 {
			continue
		}
		p(".SS %s", roff(sec.title))
		for _, f := range flags {
			p(".TP")
			name := `\-\-` + roff(f.Name)
			if f.Shorthand != "" {
				name = `\-` + f.Shorthand + ", " + name
			}
			arg := ""
			if f.Value.Type() != "bool" && f.Value.Type() != "count" {
				arg = ` \fI` + roff(strings.ToUpper(f.Value.Type())) + `\fR`
			}
			p(`.B %s%s`, name, arg)
			text := f.Usage
			if def := configValue(f); def != "" && def != "false" && def != "0" || f.Value.Type() == "int" {
				text += " (default: " + orNone(configValue(f)) + ")"
			}
			if isReloadable(f) {
				text += " Changes on SIGHUP."
			}
			p("%s", roff(text))
		}
	}
	p(".SH SIGNALS")
	p(".TP")
	p(".B SIGHUP")
	p("%s", roff("Read the command line's configuration file and every list and pattern file again. What can change at runtime takes effect between two decisions; "+
		"a change that needs a restart is logged; a configuration with a problem is refused and the one in force stays (greymilter_config_last_reload_success reads 0)."))
	p(".TP")
	p(".B SIGTERM, SIGINT")
	p("Stop accepting connections, answer the decisions in flight, close the database and exit.")
	p(".SH FILES")
	p(".TP")
	p(".I /etc/greymilter/greymilter.conf")
	p("The configuration of the packaged service.")
	p(".TP")
	p(".I /var/lib/greymilter/greymilter.db")
	p("The SQLite database of the packaged service.")
	p(".SH EXIT STATUS")
	p("0 on success, 2 for a bad option, configuration or list file (check\\-config: any problem), 1 for other failures.")
	p(".SH SEE ALSO")
	p(".BR postfix (1),")
	p(".BR postgrey (8),")
	p(".BR systemctl (1)")
}
