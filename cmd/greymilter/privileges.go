package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/internal/sockaddr"
)

// Who greymilter runs as. It binds its sockets first (a unix socket in
// Postfix's queue directory, or a port, may need root), then drops to
// --user before it opens the database or reads any list, so that a flaw
// in a front end gives an attacker an unprivileged user, not root.
// refuseRoot is false only in this package's unit tests, which run as
// root in CI and test other flags; the refusal has its own tests here and
// end to end.
var refuseRoot = true

type privilegeFlags struct {
	user        string
	allowRoot   bool
	socketGroup string
}

func (p *privilegeFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&p.user, "user", "", "after binding the sockets, switch to this user and its groups (greymilter refuses to run as root otherwise)")
	fs.BoolVar(&p.allowRoot, "allow-root", false, "run as root without --user (a local trial; a real installation uses --user)")
	fs.StringVar(&p.socketGroup, "socket-group", "", "group of a unix milter socket, e.g. postfix (name or number)")
}

// identity is the user greymilter switches to.
type identity struct {
	name     string
	uid, gid int
	groups   []int
}

// resolveUser checks, before anything is bound, that greymilter may run as
// it was asked, and finds the --user to switch to (nil: stay as is).
func (p *privilegeFlags) resolveUser() (*identity, error) {
	euid := os.Geteuid()
	if p.user == "" {
		if euid == 0 && !p.allowRoot && refuseRoot {
			return nil, configError(errors.New("refusing to run as root: give --user NAME (greymilter binds its sockets as root, then switches to NAME before opening the database), or --allow-root for a trial run"))
		}
		return nil, nil
	}
	u, err := user.Lookup(p.user)
	if err != nil {
		return nil, configError(fmt.Errorf("--user %s: %w", p.user, err))
	}
	id := &identity{name: u.Username}
	if id.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("--user %s: uid %q: %w", p.user, u.Uid, err)
	}
	if id.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, fmt.Errorf("--user %s: gid %q: %w", p.user, u.Gid, err)
	}
	if id.uid == 0 {
		return nil, configError(fmt.Errorf("--user %s: that is root; give an unprivileged user, or --allow-root", p.user))
	}
	if euid != 0 {
		if euid != id.uid {
			return nil, configError(fmt.Errorf("--user %s: only root can switch users (greymilter runs as uid %d)", p.user, euid))
		}
		return id, nil
	}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("--user %s: groups: %w", p.user, err)
	}
	id.groups = []int{id.gid}
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil && n != id.gid {
			id.groups = append(id.groups, n)
		}
	}
	return id, nil
}

// drop switches every thread of the process to id: supplementary groups,
// then group, then user (after setuid, setgid would no longer be allowed).
// Go applies these to all threads (since Go 1.16).
func (id *identity) drop() error {
	if id == nil || os.Geteuid() != 0 {
		return nil
	}
	if err := syscall.Setgroups(id.groups); err != nil {
		return fmt.Errorf("--user %s: setgroups: %w", id.name, err)
	}
	if err := syscall.Setgid(id.gid); err != nil {
		return fmt.Errorf("--user %s: setgid %d: %w", id.name, id.gid, err)
	}
	if err := syscall.Setuid(id.uid); err != nil {
		return fmt.Errorf("--user %s: setuid %d: %w", id.name, id.uid, err)
	}
	if syscall.Setuid(0) == nil {
		return fmt.Errorf("--user %s: root could be taken back after switching", id.name)
	}
	return nil
}

// bindAndDrop binds every socket while greymilter may still be root, then
// switches to --user; the database and list files are opened afterwards,
// as that user.
func (a *app) bindAndDrop(ctx context.Context) error {
	c := &a.cfg.core
	id, err := a.cfg.privileges.resolveUser()
	if err != nil {
		return err
	}
	a.runAs = id
	if c.socket != "none" {
		if err := a.listenMilter(ctx); err != nil {
			return err
		}
	}
	for _, m := range a.cfg.modules {
		if sm, ok := m.(socketModule); ok {
			if err := sm.listen(ctx, a); err != nil {
				return err
			}
		}
	}
	if err := id.drop(); err != nil {
		return err
	}
	if id != nil {
		a.log.Log(ctx, levelNotice, "switched user", "user", id.name, "uid", id.uid, "gid", id.gid)
		return checkWritable(c.db, id)
	}
	return nil
}

// socketPerm is how a unix socket is created: mode, the --user as owner
// (so that greymilter can still remove it after switching) and group.
func (a *app) socketPerm(mode modeValue, group, flag string) (sockaddr.Perm, error) {
	perm := sockaddr.Perm{Mode: os.FileMode(mode), UID: -1, GID: -1}
	if a.runAs != nil && os.Geteuid() == 0 {
		perm.UID = a.runAs.uid
	}
	if group == "" {
		return perm, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		if g, err = user.LookupGroupId(group); err != nil {
			return perm, configError(fmt.Errorf("%s %s: no such group", flag, group))
		}
	}
	perm.GID, _ = strconv.Atoi(g.Gid)
	return perm, nil
}

// checkWritable says plainly when the database cannot be written by the
// user greymilter switched to, rather than leaving it to SQLite's message.
func checkWritable(db string, id *identity) error {
	if db == ":memory:" || strings.Contains(db, "://") || strings.HasPrefix(db, "file:") {
		return nil
	}
	const wOK, xOK = 2, 1
	dir := filepath.Dir(db)
	if err := syscall.Access(dir, wOK|xOK); err != nil {
		return configError(fmt.Errorf("--db %s: the directory %s is not writable by --user %s (uid %d), which SQLite needs for its journal: %w; e.g. chown %s %s", db, dir, id.name, id.uid, err, id.name, dir))
	}
	if err := syscall.Access(db, wOK); err != nil && !errors.Is(err, syscall.ENOENT) {
		return configError(fmt.Errorf("--db %s: not writable by --user %s (uid %d): %w; e.g. chown %s %s", db, id.name, id.uid, err, id.name, db))
	}
	return nil
}
