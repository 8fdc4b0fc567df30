package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/internal/control"
)

// dbUsage lists the `greymilter db` commands and says which need the
// running daemon.
const dbUsage = `Usage: greymilter db COMMAND [flags]

Look into greymilter's store and change it. When greymilter runs, every
command goes through its control socket (--control-socket), so that the
running daemon sees each change at once; when it does not run, commands
work on the SQLite file directly, and on a PostgreSQL database (--db
postgres://...) they always may.

  explain --client IP [--name N] [--helo H] --sender S --recipient R
          what greymilter would decide now and why, step by step, without
          writing anything (needs the running daemon: its lists and checks)
  list    [FILTER] [--json]            triplets, with first seen, last seen,
                                       attempts and when they passed
  list --slow-retriers [--domain D] [--json]
                                       sender domains seen retrying late
                                       (--learn-slow-retriers): how many
                                       clients did, and how many of those
                                       then passed (learned at
                                       --slow-retrier-clients)
  delete  FILTER [--yes]               forget triplets (--yes above one)
  pass    FILTER                       mark waiting triplets as passed
  whitelist --client IP|NET [--for DURATION] [--note TEXT]
                                       let a client through at once
  whitelist --remove --client IP|NET   take an entry away
  whitelist                            list the runtime whitelist
  purge                                forget what has expired, now
  export  [FILE]                       everything as JSON lines (stdout)
  import  [FILE]                       what export wrote (stdin), e.g. into
                                       PostgreSQL from SQLite
  import-postgrey DBDIR|DBFILE [--delay D]
                                       postgrey's triplets and auto-whitelist
                                       (reads its BerkeleyDB with db_dump)
  import-sqlgrey DSN                   sqlgrey's connect, from_awl and
                                       domain_awl tables (SQLite file or postgres:// URL)

FILTER: --client IP|NET|spf:DOMAIN --sender S --recipient R --pending|--passed

Common flags: --db, --control-socket, --config (greymilter's config file:
read as the daemon reads it, for --db, --control-socket, --privacy and
the subnet sizes), --privacy and --privacy-secret (without a running
greymilter, a private database's keys are made as the daemon makes them:
give its --config or these).
`

// runDB is `greymilter db`.
func runDB(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dbUsage)
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, dbUsage)
		return 0
	}
	cmd, args := splitDBCommand(args)
	c := &dbCommand{name: cmd, stdout: stdout, stderr: stderr}
	run, ok := dbCommands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "greymilter db: unknown command %q\n\n%s", cmd, dbUsage)
		return exitUsage
	}
	fs := pflag.NewFlagSet("greymilter db "+cmd, pflag.ContinueOnError)
	// Help goes to standard output (parse); errors are reported by fail.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	fs.StringVar(&c.db, "db", "greymilter.db", "greymilter's database: SQLite file or postgres:// URL")
	fs.StringVar(&c.socket, "control-socket", "", controlSocketUsage)
	fs.StringVar(&c.config, "config", "", "greymilter's config file, for --db, --control-socket, --privacy and the subnet sizes")
	fs.BoolVar(&c.privacy, "privacy", false, "without a running greymilter: the database is private (greymilter --privacy); what you type is hashed as its keys are")
	fs.StringVar(&c.privacySecret, "privacy-secret", "", "without a running greymilter: its --privacy-secret")
	status := run(c, fs, args)
	if c.closer != nil {
		if err := c.closer(); err != nil && status == 0 {
			fmt.Fprintf(stderr, "greymilter db %s: %v\n", cmd, err)
			status = 1
		}
	}
	return status
}

// splitDBCommand finds the command among args, so that the common flags
// may come before it (greymilter db --db FILE list) as well as after.
func splitDBCommand(args []string) (cmd string, rest []string) {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--db" || a == "--control-socket" || a == "--config" || a == "--privacy-secret":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return a, append(append([]string(nil), args[:i]...), args[i+1:]...)
		}
	}
	return args[0], args[1:]
}

// dbCommand is one run of a `greymilter db` command.
type dbCommand struct {
	name                 string
	stdout, stderr       io.Writer
	db, socket, config   string
	privacy              bool
	privacySecret        string
	filter               control.Request
	pending, passed, yes bool
	// cfg is the daemon's configuration as far as db knows it: its
	// config file and the common flags, for opening the store as it does.
	cfg *config

	daemon *control.Client // when greymilter runs
	ops    *control.Ops    // when it does not
	closer func() error
}

var dbCommands = map[string]func(c *dbCommand, fs *pflag.FlagSet, args []string) int{
	"list":            (*dbCommand).list,
	"explain":         (*dbCommand).explain,
	"delete":          (*dbCommand).delete,
	"pass":            (*dbCommand).pass,
	"whitelist":       (*dbCommand).whitelist,
	"purge":           (*dbCommand).purge,
	"export":          (*dbCommand).export,
	"import":          (*dbCommand).importExport,
	"import-postgrey": (*dbCommand).importPostgrey,
	"import-sqlgrey":  (*dbCommand).importSQLgrey,
}

// fail reports err and returns the exit status.
func (c *dbCommand) fail(err error) int {
	fmt.Fprintf(c.stderr, "greymilter db %s: %v\n", c.name, err)
	if errors.Is(err, errConfig) || errors.Is(err, control.ErrRefused) {
		return exitUsage
	}
	return 1
}

// filterFlags adds the triplet filter's flags.
func (c *dbCommand) filterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.filter.Client, "client", "", "client address or network (CIDR), or identity (spf:DOMAIN)")
	fs.StringVar(&c.filter.Sender, "sender", "", "envelope sender")
	fs.StringVar(&c.filter.Recipient, "recipient", "", "envelope recipient")
	fs.BoolVar(&c.pending, "pending", false, "only triplets that have not passed")
	fs.BoolVar(&c.passed, "passed", false, "only triplets that passed")
}

// parse parses args and the config file, checks the filter and connects.
func (c *dbCommand) parse(fs *pflag.FlagSet, args []string, maxArgs int) (ok bool, status int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(c.stdout, "Usage: greymilter db %s [flags]\n\n", c.name)
			fs.SetOutput(c.stdout)
			fs.PrintDefaults()
			return false, 0
		}
		return false, c.fail(configError(err))
	}
	if fs.NArg() > maxArgs {
		return false, c.fail(configError(fmt.Errorf("unexpected argument %q", fs.Arg(maxArgs))))
	}
	if c.pending && c.passed {
		return false, c.fail(configError(errors.New("--pending and --passed exclude each other")))
	}
	if c.pending {
		c.filter.State = "pending"
	}
	if c.passed {
		c.filter.State = "passed"
	}
	if c.filter.Client != "" && c.name != "whitelist" {
		if err := (greylist.Filter{Client: c.filter.Client}).Check(); err != nil {
			return false, c.fail(configError(fmt.Errorf("--client: %w", err)))
		}
	}
	if err := c.readConfig(fs); err != nil {
		return false, c.fail(configError(err))
	}
	return true, 0
}

// readConfig takes --db, --control-socket, the privacy flags and the rest
// of the daemon's settings from greymilter's config file, unless given on
// the command line: the file is parsed with every flag of the daemon, so
// that it is read as the daemon reads it.
func (c *dbCommand) readConfig(own *pflag.FlagSet) error {
	cfg := newConfig()
	if c.config != "" {
		if errs := applyConfigFile(cfg.fs, c.config, cfg.origin); len(errs) > 0 {
			return errors.Join(errs...)
		}
		if !own.Changed("db") {
			c.db = cfg.core.db
		}
		if !own.Changed("control-socket") {
			c.socket = cfg.fs.Lookup("control-socket").Value.String()
		}
	}
	cfg.core.db = c.db
	privacy := privacyOf(cfg)
	if own.Changed("privacy") {
		privacy.on = c.privacy
	}
	if own.Changed("privacy-secret") {
		privacy.secret = c.privacySecret
	}
	// An admin command never empties nor moves the database aside, nor
	// makes it private, whatever the daemon's config file says, and may
	// wait longer than a decision.
	privacy.migrate, privacy.existingOnly, cfg.core.dbRecover = false, true, false
	cfg.core.dbTimeout = 30 * time.Second
	c.cfg = cfg
	return nil
}

// connect reaches the running daemon through its control socket, or opens
// the store when no daemon listens there.
func (c *dbCommand) connect(ctx context.Context, rules greylist.Rules) error {
	path := defaultControlSocket(c.db, c.socket)
	if path != "" {
		cl, err := control.Dial(path, 5*time.Second)
		if err == nil {
			c.daemon, c.closer = cl, cl.Close
			return nil
		}
		explicit := c.socket != "" && c.socket != "none"
		if explicit || !(errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)) {
			return fmt.Errorf("control socket %s: %w", path, err)
		}
	}
	// No daemon: the store itself. A missing SQLite file would be
	// created empty: say so instead.
	if !strings.Contains(c.db, "://") && c.db != ":memory:" && !strings.Contains(c.db, "=") {
		if _, err := os.Stat(c.db); err != nil {
			return configError(fmt.Errorf("--db: %w (and no greymilter answers on its control socket)", err))
		}
	}
	// Opened as the daemon opens it: under --privacy, what the admin types
	// is hashed with the daemon's secret and subnet sizes.
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	raw, keyed, err := openStore(ctx, c.cfg, logger)
	if errors.Is(err, greylist.ErrPrivacyMismatch) {
		return fmt.Errorf("%w (greymilter db: give the daemon's --config, or the --privacy and --privacy-secret it runs with)", err)
	}
	if err != nil {
		return err
	}
	c.ops, c.closer = &control.Ops{Store: keyed, Rules: func() greylist.Rules { return rules }}, raw.Close
	return nil
}

// do runs req on the daemon or the store.
func (c *dbCommand) do(ctx context.Context, req control.Request, emit func(greylist.ExportLine) error) (control.Done, error) {
	if emit == nil {
		emit = func(greylist.ExportLine) error { return nil }
	}
	if c.daemon != nil {
		return c.daemon.Do(req, emit)
	}
	return c.ops.Do(ctx, req, emit)
}

// where says where a change was made, for the confirmation line.
func (c *dbCommand) where() string {
	if c.daemon != nil {
		return "through the running greymilter"
	}
	if u, err := url.Parse(c.db); err == nil && u.User != nil {
		return "in " + u.Redacted() // no password on the screen
	}
	return "in " + c.db
}

// simple runs a command whose only flags are the filter's (and extra).
func (c *dbCommand) simple(fs *pflag.FlagSet, args []string, req control.Request, report func(control.Done)) int {
	if ok, st := c.parse(fs, args, 0); !ok {
		return st
	}
	ctx := context.Background()
	if err := c.connect(ctx, greylist.DefaultRules); err != nil {
		return c.fail(err)
	}
	f := c.filter
	f.Cmd, f.Yes = req.Cmd, c.yes
	done, err := c.do(ctx, f, nil)
	if err != nil {
		return c.fail(err)
	}
	report(done)
	return 0
}

func (c *dbCommand) list(fs *pflag.FlagSet, args []string) int {
	c.filterFlags(fs)
	asJSON := fs.Bool("json", false, "one JSON object a line, as export writes")
	slow := fs.Bool("slow-retriers", false, "list the sender domains seen retrying late (--learn-slow-retriers) instead of triplets")
	fs.StringVar(&c.filter.Domain, "domain", "", "with --slow-retriers: only this sender domain (under --privacy: hashed as the store keeps it)")
	if ok, st := c.parse(fs, args, 0); !ok {
		return st
	}
	if *slow && (c.filter.Client != "" || c.filter.Sender != "" || c.filter.Recipient != "" || c.filter.State != "") {
		return c.fail(configError(errors.New("--slow-retriers lists domains: --client, --sender, --recipient, --pending and --passed select triplets")))
	}
	if !*slow && c.filter.Domain != "" {
		return c.fail(configError(errors.New("--domain goes with --slow-retriers")))
	}
	ctx := context.Background()
	if err := c.connect(ctx, greylist.DefaultRules); err != nil {
		return c.fail(err)
	}
	if *slow {
		return c.listSlowRetriers(ctx, *asJSON)
	}
	req := c.filter
	req.Cmd = "list"
	var emit func(greylist.ExportLine) error
	var tw *tabwriter.Writer
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		emit = func(l greylist.ExportLine) error { return enc.Encode(l) }
	} else {
		tw = tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CLIENT\tSENDER\tRECIPIENT\tFIRST SEEN\tLAST SEEN\tATTEMPTS\tPASSED AT")
		emit = func(l greylist.ExportLine) error {
			passed := "-"
			if !l.PassedAt.IsZero() {
				passed = stamp(l.PassedAt)
			}
			_, err := fmt.Fprintf(tw, "%s\t<%s>\t<%s>\t%s\t%s\t%d\t%s\n", l.Client, *l.Sender, l.Recipient, stamp(l.FirstSeen), stamp(l.LastSeen), l.Attempts, passed)
			return err
		}
	}
	done, err := c.do(ctx, req, emit)
	if err != nil {
		return c.fail(err)
	}
	if tw != nil {
		tw.Flush()
		fmt.Fprintf(c.stdout, "%d triplets\n", done.Count)
	}
	return 0
}

// listSlowRetriers is `db list --slow-retriers`.
func (c *dbCommand) listSlowRetriers(ctx context.Context, asJSON bool) int {
	req := control.Request{Cmd: "slow-retriers", Domain: c.filter.Domain}
	var lines []greylist.ExportLine
	done, err := c.do(ctx, req, func(l greylist.ExportLine) error { lines = append(lines, l); return nil })
	if err != nil {
		return c.fail(err)
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return c.fail(err)
			}
		}
		return 0
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	domain := "DOMAIN"
	if done.Hashed {
		domain = "DOMAIN (HMAC, --privacy)"
	}
	fmt.Fprintf(tw, "%s\tLATE CLIENTS\tPASSED\tLAST SEEN\n", domain)
	for _, l := range lines {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", l.Domain, l.LateClients, l.Passes, stamp(l.LastSeen))
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "%d domains\n", done.Count)
	if done.Hashed {
		fmt.Fprintln(c.stdout, "Under --privacy the domains are stored as hashes, which cannot be turned back into names: --domain NAME finds one.")
	}
	return 0
}

func stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

func (c *dbCommand) delete(fs *pflag.FlagSet, args []string) int {
	c.filterFlags(fs)
	fs.BoolVar(&c.yes, "yes", false, "delete every triplet the filter selects, however many")
	return c.simple(fs, args, control.Request{Cmd: "delete"}, func(d control.Done) {
		fmt.Fprintf(c.stdout, "deleted %d triplets %s\n", d.Count, c.where())
	})
}

func (c *dbCommand) pass(fs *pflag.FlagSet, args []string) int {
	c.filterFlags(fs)
	return c.simple(fs, args, control.Request{Cmd: "pass"}, func(d control.Done) {
		fmt.Fprintf(c.stdout, "passed %d triplets %s\n", d.Count, c.where())
	})
}

func (c *dbCommand) whitelist(fs *pflag.FlagSet, args []string) int {
	fs.StringVar(&c.filter.Client, "client", "", "client address or network (CIDR)")
	fs.StringVar(&c.filter.For, "for", "", "how long the entry lasts (e.g. 12h, 30m); default: until removed")
	fs.StringVar(&c.filter.Note, "note", "", "why, for whoever reads the list later")
	remove := fs.Bool("remove", false, "remove the entry of --client")
	asJSON := fs.Bool("json", false, "list as JSON lines")
	if ok, st := c.parse(fs, args, 0); !ok {
		return st
	}
	req := control.Request{Cmd: "whitelist", Client: c.filter.Client, For: c.filter.For, Note: c.filter.Note}
	switch {
	case req.Client == "" && (*remove || req.For != "" || req.Note != ""):
		return c.fail(configError(errors.New("--client is needed")))
	case req.Client == "":
		req.Cmd = "whitelist-list"
	case *remove:
		req.Cmd = "unwhitelist"
	}
	if req.Client != "" {
		if _, err := greylist.ParseNetwork(req.Client); err != nil {
			return c.fail(configError(fmt.Errorf("--client %w", err)))
		}
	}
	ctx := context.Background()
	if err := c.connect(ctx, greylist.DefaultRules); err != nil {
		return c.fail(err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	var lines []greylist.ExportLine
	done, err := c.do(ctx, req, func(l greylist.ExportLine) error { lines = append(lines, l); return nil })
	if err != nil {
		return c.fail(err)
	}
	switch req.Cmd {
	case "whitelist":
		until := "until removed"
		if len(lines) == 1 && !lines[0].Expires.IsZero() {
			until = "until " + stamp(lines[0].Expires)
		}
		fmt.Fprintf(c.stdout, "whitelisted %s %s, %s\n", lines[0].Network, until, c.where())
	case "unwhitelist":
		fmt.Fprintf(c.stdout, "removed %s from the whitelist %s\n", req.Client, c.where())
	default:
		if *asJSON {
			enc := json.NewEncoder(c.stdout)
			for _, l := range lines {
				enc.Encode(l)
			}
			return 0
		}
		fmt.Fprintln(tw, "NETWORK\tADDED\tEXPIRES\tNOTE")
		for _, l := range lines {
			exp := "never"
			if !l.Expires.IsZero() {
				exp = stamp(l.Expires)
				if !l.Expires.After(time.Now()) {
					exp += " (expired)"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Network, stamp(l.Added), exp, l.Note)
		}
		tw.Flush()
		fmt.Fprintf(c.stdout, "%d entries\n", done.Count)
	}
	return 0
}

func (c *dbCommand) purge(fs *pflag.FlagSet, args []string) int {
	rules := greylist.DefaultRules
	fs.Var(newLongDuration(&rules.MaxAge, rules.MaxAge), "max-age", "without a running greymilter: forget triplets and clients not seen for this long (a running one uses its own)")
	fs.Var(newLongDuration(&rules.PurgeUnverified, rules.PurgeUnverified), "purge-unverified", "without a running greymilter: forget triplets that never passed after this long")
	if ok, st := c.parse(fs, args, 0); !ok {
		return st
	}
	ctx := context.Background()
	if err := c.connect(ctx, rules); err != nil {
		return c.fail(err)
	}
	done, err := c.do(ctx, control.Request{Cmd: "purge"}, nil)
	if err != nil {
		return c.fail(err)
	}
	p := done.Purged
	fmt.Fprintf(c.stdout, "purged %d triplets not seen for max-age, %d that never passed, %d clients, %s\n", p.Triplets, p.Unverified, p.Clients, c.where())
	return 0
}

func (c *dbCommand) export(fs *pflag.FlagSet, args []string) int {
	if ok, st := c.parse(fs, args, 1); !ok {
		return st
	}
	ctx := context.Background()
	if err := c.connect(ctx, greylist.DefaultRules); err != nil {
		return c.fail(err)
	}
	out := c.stdout
	var f *os.File
	if name := fs.Arg(0); name != "" && name != "-" {
		var err error
		if f, err = os.Create(name); err != nil {
			return c.fail(err)
		}
		out = f
	}
	enc := json.NewEncoder(out)
	done, err := c.do(ctx, control.Request{Cmd: "export"}, func(l greylist.ExportLine) error { return enc.Encode(l) })
	if err == nil && f != nil {
		err = f.Close()
	}
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stderr, "exported %d records\n", done.Count)
	return 0
}

func (c *dbCommand) importExport(fs *pflag.FlagSet, args []string) int {
	if ok, st := c.parse(fs, args, 1); !ok {
		return st
	}
	name := fs.Arg(0)
	var in io.Reader = os.Stdin
	if name == "" || name == "-" {
		name = "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return c.fail(err)
		}
		defer f.Close()
		in = f
	}
	im, err := greylist.ReadExport(in, name)
	if err != nil {
		return c.fail(configError(err))
	}
	return c.store(im)
}

// store writes what an import read, all checked before: through the
// daemon in batches, or into the store.
func (c *dbCommand) store(im *greylist.Imported) int {
	ctx := context.Background()
	if err := c.connect(ctx, greylist.DefaultRules); err != nil {
		return c.fail(err)
	}
	lines := im.Lines()
	const batch = 1000
	for i := 0; i < len(lines); i += batch {
		if _, err := c.do(ctx, control.Request{Cmd: "import", Lines: lines[i:min(i+batch, len(lines))]}, nil); err != nil {
			return c.fail(fmt.Errorf("after %d of %d records: %w", i, len(lines), err))
		}
	}
	fmt.Fprintf(c.stdout, "imported %d triplets, %d clients, %d whitelist entries %s\n", len(im.Triplets), len(im.Clients), len(im.Whitelist), c.where())
	return 0
}
