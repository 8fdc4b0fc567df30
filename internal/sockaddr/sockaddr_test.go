package sockaddr

import (
	"context"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		network string
		address string
	}{
		{"inet:127.0.0.1:10029", "tcp", "127.0.0.1:10029"},
		{"inet:10029@127.0.0.1", "tcp", "127.0.0.1:10029"},
		{"inet:10029@localhost", "tcp", "localhost:10029"},
		{"inet:10029", "tcp", ":10029"},
		{"inet6:[::1]:10029", "tcp6", "[::1]:10029"},
		{"inet6:10029@::1", "tcp6", "[::1]:10029"},
		{"inet6:10029@[::1]", "tcp6", "[::1]:10029"},
		{"unix:/run/greymilter.sock", "unix", "/run/greymilter.sock"},
		{"local:/var/run/milter.sock", "unix", "/var/run/milter.sock"},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if a.Network != tt.network || a.Address != tt.address {
			t.Errorf("Parse(%q) = %s %s, want %s %s", tt.in, a.Network, a.Address, tt.network, tt.address)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "inet", "unix:", "inet:127.0.0.1:notaport", "inet:99999@localhost", "smtp:foo:1", "inet:127.0.0.1", "127.0.0.1:25"} {
		if a, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, a)
		}
	}
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	a := Addr{Network: "unix", Address: path}

	ln, err := Listen(context.Background(), a, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	// A second listener while the first is alive must not steal it.
	if _, err := Listen(context.Background(), a, 0); err == nil {
		t.Fatal("second Listen on a live socket succeeded")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("mode = %v, want 0660", fi.Mode().Perm())
	}
	// Leave the socket file behind, as a killed process would.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	ln2, err := Listen(context.Background(), a, 0)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	ln2.Close()
}

func TestListenRefusesRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(context.Background(), Addr{Network: "unix", Address: path}, 0); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
}

func TestListenPermSetsModeAndGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a socket to another group needs root")
	}
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Skip("no group nogroup:", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	// A permissive umask must not leak into the socket's mode.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := ListenPerm(context.Background(), Addr{Network: "unix", Address: path}, Perm{Mode: 0o660, UID: -1, GID: gid})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || int(st.Gid) != gid || st.Uid != 0 {
		t.Errorf("socket %v uid %d gid %d, want 0660 uid 0 gid %d", fi.Mode().Perm(), st.Uid, st.Gid, gid)
	}
	if now := syscall.Umask(0); now != 0 {
		t.Errorf("umask left at %o", now)
	}
}
