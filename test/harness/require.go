package harness

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// CI reports whether the tests run under continuous integration (CI=true),
// where a missing dependency is a failure rather than a skip.
func CI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Require makes sure the test runs as root and that each named program is
// installed. Otherwise the test is skipped, or failed under [CI].
func Require(t testing.TB, programs ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root privileges")
	}
	for _, p := range programs {
		if _, err := lookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "end-to-end test needs " + strings.Join(missing, ", ")
	if CI() {
		t.Fatal(msg + " (CI=true: missing dependencies fail the run)")
	}
	t.Skip(msg + " (set CI=true to make this a failure)")
}

// lookPath finds a program in $PATH, in the sbin directories that a
// non-login shell often leaves out of it, or in /opt/exim4/usr/sbin where
// .ci/run unpacks Exim (its package conflicts with Postfix's).
func lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/opt/exim4/usr/sbin"} {
		if p, err2 := exec.LookPath(filepath.Join(dir, name)); err2 == nil {
			return p, nil
		}
	}
	return "", err
}

// FreePort returns a TCP port that was free on 127.0.0.1 and ::1 a moment
// ago. It is drawn at random from below the kernel's ephemeral range, so
// that neither a server binding port 0 (as the harness's greymilter does)
// nor an outgoing connection can be handed it before the caller binds it:
// only another FreePort could, by chance.
func FreePort(t testing.TB) int {
	t.Helper()
	const floor = 10000
	top := ephemeralLow()
	for range 1000 {
		p := floor + rand.IntN(top-floor)
		if portFree(p) {
			return p
		}
	}
	t.Fatalf("harness: no free port in %d-%d", floor, top-1)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// where it cannot be read, Linux's default).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low > 11000 {
				return low
			}
		}
	}
	return 32768
}

// portFree tells whether port can be bound on 127.0.0.1, and on ::1 where
// the machine has IPv6.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	defer l.Close()
	l6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
	if err != nil {
		// Without IPv6 there is nothing to hold; with it, the port is taken.
		return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)
	}
	l6.Close()
	return true
}
