package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/greymilter/greymilter/test/harness"
)

// Least privilege: greymilter refuses root unless told, switches to --user
// after binding its sockets, gives them the asked group and mode, and
// serves a chrooted Postfix through a socket in its queue directory.

func lookupIDs(t *testing.T, userName, groupName string) (uid, gid, groupGID int) {
	t.Helper()
	u, err := user.Lookup(userName)
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	groupGID, _ = strconv.Atoi(g.Gid)
	return uid, gid, groupGID
}

// dirOwnedBy makes a directory that owner (uid, gid) can write, with mode.
func dirOwnedBy(t *testing.T, path string, uid, gid int, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if harness.CI() {
			t.Fatal("privilege tests need root")
		}
		t.Skip("privilege tests need root")
	}
}

// runGreymilter runs the binary to its exit and returns its status and
// stderr.
func runGreymilter(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(harness.GreymilterBinary(t), args...)
	cmd.Stderr = &stderr
	_ = cmd.Run()
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestT61RootRefused: started as root without --user or --allow-root,
// greymilter exits 2 with a message that says what to do, before binding.
func TestT61RootRefused(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	sock := filepath.Join(t.TempDir(), "g.sock")
	code, stderr := runGreymilter(t, "--db", ":memory:", "-s", "unix:"+sock)
	if code != 2 || !strings.Contains(stderr, "refusing to run as root") || !strings.Contains(stderr, "--user NAME") {
		t.Fatalf("exit %d, stderr %q; want 2 and a message naming --user", code, stderr)
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Error("the socket was created before the refusal")
	}
}

// TestT61DatabaseNotWritableByUser: a database directory the --user cannot
// write is a clear error at start naming the directory and the user.
func TestT61DatabaseNotWritableByUser(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	dir := harness.TempDir(t) // root's, 0755
	code, stderr := runGreymilter(t, "--user", "nobody", "-s", "inet:127.0.0.1:0", "--db", filepath.Join(dir, "greymilter.db"))
	if code != 2 || !strings.Contains(stderr, "not writable by --user nobody") || !strings.Contains(stderr, dir) {
		t.Fatalf("exit %d, stderr %q; want 2 naming the directory and nobody", code, stderr)
	}
}

// TestT61ChrootedPostfixAsNobody: the README's set-up for a chrooted
// Postfix: greymilter started as root with --user nobody --socket-group
// postfix binds unix:QUEUE/greymilter/greymilter.sock 0660 nobody:postfix
// (and a policy socket the same way), runs as nobody, writes its database
// as nobody, and Postfix's chrooted smtpd reaches it as
// unix:/greymilter/greymilter.sock: the first delivery is greylisted.
func TestT61ChrootedPostfixAsNobody(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	uid, gid, postfixGID := lookupIDs(t, "nobody", "postfix")
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: "unix:/greymilter/greymilter.sock", ChrootSMTPD: true})

	sockDir := dirOwnedBy(t, filepath.Join(pf.QueueDir, "greymilter"), uid, postfixGID, 0o750)
	dbDir := dirOwnedBy(t, filepath.Join(harness.TempDir(t), "db"), uid, gid, 0o700)
	sock := filepath.Join(sockDir, "greymilter.sock")
	policySock := filepath.Join(sockDir, "policy.sock")
	db := filepath.Join(dbDir, "greymilter.db")
	gm := harness.Greymilter(t, "--user", "nobody",
		"-s", "unix:"+sock, "--socket-mode", "0660", "--socket-group", "postfix",
		"--policy-socket", "unix:"+policySock, "--policy-socket-mode", "0640", "--policy-socket-group", "postfix",
		"--db", db, "--delay", "2")

	pid := gm.PID()
	for _, f := range []struct{ field, id string }{{"Uid", strconv.Itoa(uid)}, {"Gid", strconv.Itoa(gid)}} {
		ids := strings.Fields(procStatus(t, pid, f.field))
		if len(ids) != 4 || ids[0] != f.id || ids[1] != f.id || ids[2] != f.id || ids[3] != f.id {
			t.Errorf("/proc/%d/status %s: %v, want real, effective, saved and fs all %s", pid, f.field, ids, f.id)
		}
	}
	if groups := procStatus(t, pid, "Groups"); strings.Contains(" "+groups+" ", " 0 ") {
		t.Errorf("still in group root: Groups: %s", groups)
	}

	for _, s := range []struct {
		path string
		mode os.FileMode
	}{{sock, 0o660}, {policySock, 0o640}} {
		fi, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != s.mode || int(st.Uid) != uid || int(st.Gid) != postfixGID {
			t.Errorf("%s: %v uid %d gid %d, want a socket %v owned by nobody (%d), group postfix (%d)", s.path, fi.Mode(), st.Uid, st.Gid, s.mode, uid, postfixGID)
		}
	}

	rcpt := "t61-chroot@" + harness.Domain
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "192.0.2.71", From: "alice@client.example", To: []string{rcpt}})
	if len(res.Rcpt) != 1 {
		t.Fatalf("%+v", res)
	}
	// /greymilter/greymilter.sock exists only inside the queue directory:
	// an answer from greymilter proves smtpd ran chrooted there.
	greylisted(t, "through the chrooted smtpd", res.Rcpt[0])
	decision(t, gm, rcpt, 1, "greylist", "new")

	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
		t.Errorf("database owned by uid %d, want nobody (%d)", st.Uid, uid)
	}
}
