package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/internal/control"
	"github.com/greymilter/greymilter/internal/sockaddr"
)

// The control socket: `greymilter db` reaches the running daemon through
// it, so that changes to the store go through the daemon's store and its
// in-memory index; and the runtime whitelist step that `db whitelist`
// feeds.
func init() {
	register("Control socket", func() module { return &controlFlags{} })
}

type controlFlags struct {
	socket string

	ln   net.Listener // set by listen
	path string
}

// controlSocketUsage is shared with `greymilter db`.
const controlSocketUsage = "the control socket, a unix socket for greymilter db (mode 0600, owned by --user); default: beside the SQLite database, DB.ctl (none for :memory: and database servers); none: no control socket"

func (f *controlFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.socket, "control-socket", "", controlSocketUsage)
}

func (f *controlFlags) check() error {
	if a, err := sockaddr.Parse(f.socket); err == nil && a.Network != "unix" {
		return flagErrorf("control-socket", "--control-socket %s: a unix socket path only: the control socket is never on the network", f.socket)
	}
	return nil
}

// steps adds the runtime whitelist when the store keeps one.
func (f *controlFlags) steps(p *pipeline) error {
	if admin, ok := p.store.(greylist.Admin); ok {
		p.add(slotRuntimeWhitelist, &engine.RuntimeWhitelist{Entries: admin})
	}
	return nil
}

// defaultControlSocket is the control socket of a daemon with --db db and
// --control-socket given ("" when not given): "" for none.
func defaultControlSocket(db, given string) string {
	switch {
	case given == "none":
		return ""
	case given != "":
		return strings.TrimPrefix(strings.TrimPrefix(given, "unix:"), "local:")
	case db == ":memory:" || strings.Contains(db, "://") || strings.HasPrefix(db, "file:") || strings.Contains(db, "="):
		// No file beside an in-memory database or a server's URL.
		return ""
	}
	return db + ".ctl"
}

// listen binds the control socket before privileges are dropped, owned by
// --user and open to it alone.
func (f *controlFlags) listen(ctx context.Context, a *app) error {
	f.path = defaultControlSocket(a.cfg.core.db, f.socket)
	if f.path == "" {
		return nil
	}
	perm, err := a.socketPerm(0o600, "", "")
	if err != nil {
		return err
	}
	ln, err := sockaddr.ListenPerm(ctx, sockaddr.Addr{Network: "unix", Address: f.path}, perm)
	if err != nil && f.socket == "" {
		// The default beside the database is a convenience: a directory
		// greymilter cannot write (a read-only disk) must not keep it
		// from answering the MTA.
		a.log.Warn("no control socket: greymilter db cannot reach this greymilter", "path", f.path, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("--control-socket: %w", err)
	}
	a.onClose(func() error { ln.Close(); return nil })
	f.ln = ln
	return nil
}

func (f *controlFlags) start(_ context.Context, a *app) error {
	if f.ln == nil {
		return nil
	}
	srv := &control.Server{
		Ops: &control.Ops{
			Store: a.keyed, // under --privacy, what the admin types is hashed
			// A purge goes by the rules in force (a reload may change them).
			Rules:   func() greylist.Rules { return a.inForce.Load().greylist.Rules },
			Explain: a.engine.Explain,
			Now:     a.clock.Now,
		},
		Log: a.logs.component("control"),
	}
	ln := f.ln
	a.addService(service{
		name: "control unix:" + f.path,
		serve: func() error {
			if err := srv.Serve(ln); !errors.Is(err, control.ErrServerClosed) {
				return err
			}
			return nil
		},
		shutdown: srv.Shutdown,
	})
	return nil
}
