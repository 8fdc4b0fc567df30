// Package sockaddr parses the socket addresses that milter and policy
// set-ups are written with, and listens on them.
//
// Besides greymilter's own forms (inet:HOST:PORT, inet6:[ADDR]:PORT,
// unix:PATH) it reads the libmilter forms that Sendmail and pygreylist
// configurations use (inet:PORT@HOST, inet6:PORT@ADDR, local:PATH), so an
// existing set-up keeps its socket line.
package sockaddr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Addr is a parsed socket address.
type Addr struct {
	Network string // "tcp", "tcp4", "tcp6" or "unix"
	Address string // host:port or a file path
}

// String gives the address back in greymilter's canonical form.
func (a Addr) String() string {
	switch a.Network {
	case "unix":
		return "unix:" + a.Address
	case "tcp6":
		return "inet6:" + a.Address
	}
	return "inet:" + a.Address
}

// Parse reads a socket address.
func Parse(s string) (Addr, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Addr{}, fmt.Errorf("socket %q: want inet:HOST:PORT, inet6:[ADDR]:PORT or unix:PATH", s)
	}
	switch strings.ToLower(kind) {
	case "unix", "local":
		if rest == "" {
			return Addr{}, fmt.Errorf("socket %q: empty path", s)
		}
		return Addr{Network: "unix", Address: rest}, nil
	case "inet", "tcp":
		return parseInet(s, "tcp", rest)
	case "inet6", "tcp6":
		return parseInet(s, "tcp6", rest)
	}
	return Addr{}, fmt.Errorf("socket %q: unknown kind %q (want inet, inet6, unix or local)", s, kind)
}

func parseInet(orig, network, rest string) (Addr, error) {
	var host, port string
	if p, h, ok := strings.Cut(rest, "@"); ok {
		// libmilter: PORT@HOST
		host, port = h, p
	} else {
		var err error
		host, port, err = net.SplitHostPort(rest)
		if err != nil {
			// inet:PORT alone means every address, as libmilter does.
			if _, perr := strconv.Atoi(rest); perr != nil {
				return Addr{}, fmt.Errorf("socket %q: %w", orig, err)
			}
			host, port = "", rest
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return Addr{}, fmt.Errorf("socket %q: bad port %q", orig, port)
	}
	if strings.Contains(host, ":") {
		network = "tcp6"
	}
	return Addr{Network: network, Address: net.JoinHostPort(host, port)}, nil
}

// Listen listens on a. For a unix socket a stale socket file is replaced
// (but not a regular file: that is an error) and mode, if not zero, is
// the socket's permissions, so that the MTA's user can connect.
func Listen(ctx context.Context, a Addr, mode fs.FileMode) (net.Listener, error) {
	return ListenPerm(ctx, a, Perm{Mode: mode, UID: -1, GID: -1})
}

// Perm is who may connect to a unix socket.
type Perm struct {
	Mode     fs.FileMode // permission bits; 0 leaves them to the umask
	UID, GID int         // owner and group; -1 leaves each as created
}

// ListenPerm is Listen with a unix socket's owner and group as well. The
// socket is created with perm.Mode from the start (the umask is set around
// bind) and only then given its owner and group, so that it is never open
// wider than asked, not even for a moment. The umask is process-wide:
// call it at start, before anything else creates files.
func ListenPerm(ctx context.Context, a Addr, perm Perm) (net.Listener, error) {
	var lc net.ListenConfig
	if a.Network != "unix" {
		ln, err := lc.Listen(ctx, a.Network, a.Address)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", a, err)
		}
		return ln, nil
	}
	if err := removeStale(a.Address); err != nil {
		return nil, err
	}
	if perm.Mode != 0 {
		old := syscall.Umask(int(^perm.Mode.Perm() & 0o777))
		defer syscall.Umask(old)
	}
	ln, err := lc.Listen(ctx, "unix", a.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	if perm.UID >= 0 || perm.GID >= 0 {
		if err := os.Chown(a.Address, perm.UID, perm.GID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: %w", a, err)
		}
	}
	return ln, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("socket %s: exists and is not a socket", path)
	}
	// A socket someone still listens on is not stale.
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("socket %s: another process is listening on it", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("socket %s: removing stale socket: %w", path, err)
	}
	return nil
}
