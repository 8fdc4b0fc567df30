package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/greymilter/greymilter/test/harness"
)

// Hostile milter and policy clients against the real binary: too many
// connections, idle ones, half-sent packets with huge declared lengths,
// and a file-descriptor limit below the number of connections.

// milterSession opens a milter session as Postfix does and asks about one
// recipient; it returns the SMTP code of the answer (0 for continue).
func milterSession(network, addr, client, rcpt string) (int, error) {
	c := gomilter.NewClientWithOptions(network, addr, gomilter.ClientOptions{
		Dialer:       &net.Dialer{Timeout: 5 * time.Second},
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		ActionMask:   gomilter.OptAddHeader,
		ProtocolMask: gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH,
	})
	s, err := c.Session()
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if _, err := s.Conn("mail.example.org", gomilter.FamilyInet, 25, client); err != nil {
		return 0, err
	}
	if _, err := s.Helo("mail.example.org"); err != nil {
		return 0, err
	}
	if _, err := s.Mail("<alice@client.example>", nil); err != nil {
		return 0, err
	}
	a, err := s.Rcpt("<"+rcpt+">", nil)
	if err != nil {
		return 0, err
	}
	return a.SMTPCode, nil
}

// negotiated opens a milter connection and completes the option
// negotiation on it, which proves greymilter serves it; it stays open.
func negotiated(t *testing.T, addr string) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		Dialer: &net.Dialer{Timeout: 5 * time.Second}, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask: gomilter.OptAddHeader, ProtocolMask: gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatalf("milter negotiation: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// closedByServer reports whether the server closes c within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// procStatus reads one field of /proc/PID/status ("VmRSS", "Uid").
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return ""
}

// rssKB is the resident set size of pid in kB.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSuffix(procStatus(t, pid, "VmRSS"), " kB"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func stillRunning(t *testing.T, gm *harness.GreymilterProcess) {
	t.Helper()
	if exited, err := gm.Exited(); exited {
		t.Fatalf("greymilter exited: %v\n%s", err, gm.Log())
	}
}

// TestT60MaxConnections: over --max-connections, new milter and policy
// connections are closed at once (the MTA applies its default action to
// that session without waiting), those within keep being served, and a
// freed slot is used again.
func TestT60MaxConnections(t *testing.T) {
	t.Parallel()
	const max = 20
	gm := harness.Greymilter(t, "--max-connections", strconv.Itoa(max), "--policy-socket", "inet:127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	waitNoMilterConnections(t, gm)

	held := make([]*gomilter.ClientSession, max)
	for i := range held {
		held[i] = negotiated(t, gm.Addr)
	}
	for i := 0; i < 5; i++ {
		// Closed at once, not left waiting for a slot (none frees here).
		if !closedByServer(dialTCP(t, gm.Addr), 5*time.Second) {
			t.Fatalf("milter connection %d over the limit still open after 5s", max+i+1)
		}
	}
	gm.WaitRecord(func(r harness.LogRecord) bool {
		return r["component"] == "milter" && strings.HasPrefix(r["msg"], "connection limit reached")
	})
	m := metrics(t, gm)
	for _, want := range []string{`greymilter_connections_open{frontend="milter"} 20`, `greymilter_connections_refused_total{frontend="milter"} 5`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}

	// Postfix, finding greymilter full, applies milter_default_action
	// (tempfail) at once, not after its milter timeouts (5s and 10s here).
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	start := time.Now()
	res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "192.0.2.59", From: "alice@client.example", To: []string{"t60-full@" + harness.Domain}})
	took := time.Since(start)
	if r := res.Refusal(); r.Code != 451 || took > 4*time.Second {
		t.Errorf("through Postfix while greymilter is full: %v after %v, want 451 at once", r, took)
	}
	t.Logf("Postfix answered %v after %v while greymilter was full", res.Refusal(), took.Round(time.Millisecond))

	// The sessions within the limit are still served.
	if code, err := func() (int, error) {
		s := held[0]
		if _, err := s.Conn("mail.example.org", gomilter.FamilyInet, 25, "192.0.2.60"); err != nil {
			return 0, err
		}
		if _, err := s.Mail("<alice@client.example>", nil); err != nil {
			return 0, err
		}
		a, err := s.Rcpt("<t60-held@"+harness.Domain+">", nil)
		return a.SMTPCode, err
	}(); err != nil || code != 451 {
		t.Fatalf("held session: code %d, %v; want 451", code, err)
	}
	// A freed slot serves a new session.
	held[1].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, err := milterSession("tcp", gm.Addr, "192.0.2.61", "t60-new@"+harness.Domain)
		if err == nil && code == 451 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session served after a slot was freed: %d %v", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The policy front end has its own cap of the same size.
	paddr := gm.PolicyAddr()
	for i := 0; i < max; i++ {
		c := dialTCP(t, paddr)
		if _, err := c.Write([]byte("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.62\nsender=a@client.example\nrecipient=t60-policy@" + harness.Domain + "\n\n")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "action=") {
			t.Fatalf("policy connection %d within the limit: %q %v", i+1, line, err)
		}
	}
	if !closedByServer(dialTCP(t, paddr), 5*time.Second) {
		t.Fatal("policy connection over the limit still open after 5s")
	}
	gm.WaitRecord(func(r harness.LogRecord) bool {
		return r["component"] == "policy" && strings.HasPrefix(r["msg"], "connection limit reached")
	})
	if m := metrics(t, gm); !strings.Contains(m, `greymilter_connections_refused_total{frontend="policy"} 1`+"\n") {
		t.Errorf("metrics lack the refused policy connection:\n%s", m)
	}
	stillRunning(t, gm)
}

// metrics fetches greymilter's Prometheus metrics (--metrics-listen).
func metrics(t *testing.T, gm *harness.GreymilterProcess) string {
	t.Helper()
	rec := gm.WaitRecord(func(r harness.LogRecord) bool {
		return r["msg"] == "listening" && strings.HasPrefix(r["service"], "metrics http://")
	})
	resp, err := http.Get(strings.TrimPrefix(rec["service"], "metrics "))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestT60IdleConnectionsClosed: milter connections that send nothing for
// --milter-idle-timeout are closed (and their slots freed); before that
// they stay open.
func TestT60IdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	gm := harness.Greymilter(t, "--milter-idle-timeout", "2s", "--max-connections", "10", "--metrics-listen", "127.0.0.1:0")
	waitNoMilterConnections(t, gm)
	conns := make([]net.Conn, 10)
	for i := range conns {
		conns[i] = dialTCP(t, gm.Addr)
	}
	start := time.Now()
	var wg sync.WaitGroup
	closedAt := make([]time.Duration, len(conns))
	for i, c := range conns {
		wg.Go(func() {
			if closedByServer(c, 20*time.Second) {
				closedAt[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	for i, d := range closedAt {
		if d == 0 {
			t.Fatalf("idle connection %d still open after 20s", i)
		}
		if d < 1500*time.Millisecond {
			t.Fatalf("idle connection %d closed after %v, before the 2s idle timeout", i, d)
		}
	}
	t.Logf("10 idle connections closed after %v to %v (idle timeout 2s)", minDur(closedAt), maxDur(closedAt))
	// Their slots are free again.
	if code, err := milterSession("tcp", gm.Addr, "192.0.2.63", "t60-idle@"+harness.Domain); err != nil || code != 451 {
		t.Fatalf("after the idle ones were closed: %d %v", code, err)
	}
}

// waitNoMilterConnections waits until greymilter counts no milter
// connection open: the harness's readiness probe holds a slot until
// greymilter has read its close, and a test that fills every slot must
// not race it.
func waitNoMilterConnections(t *testing.T, gm *harness.GreymilterProcess) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(metrics(t, gm), `greymilter_connections_open{frontend="milter"} 0`+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("milter connections still open 10s after start:\n%s", metrics(t, gm))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func minDur(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func maxDur(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// TestT60HugePacketsKeepRSSBounded: 150 connections each declaring a
// packet of 1 MiB - 1 and sending a few bytes of it are closed without the
// megabyte being allocated; 150 more each half-sending a packet just under
// the 64 KiB cap are held only until the packet timeout. RSS stays within
// a few MB, and greymilter keeps answering.
func TestT60HugePacketsKeepRSSBounded(t *testing.T) {
	t.Parallel()
	gm := harness.Greymilter(t)
	if code, err := milterSession("tcp", gm.Addr, "192.0.2.64", "t60-warm@"+harness.Domain); err != nil || code != 451 {
		t.Fatalf("warm-up session: %d %v", code, err)
	}
	before := rssKB(t, gm.PID())

	attack := func(length uint32) []net.Conn {
		conns := make([]net.Conn, 150)
		for i := range conns {
			c := dialTCP(t, gm.Addr)
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], length)
			if _, err := c.Write(append(hdr[:], 'O', 0, 0, 0, 6)); err != nil {
				t.Fatal(err)
			}
			conns[i] = c
		}
		return conns
	}
	huge := attack(1<<20 - 1)
	time.Sleep(time.Second)
	afterHuge := rssKB(t, gm.PID())
	for i, c := range huge {
		if !closedByServer(c, 5*time.Second) {
			t.Fatalf("connection %d with a 1 MiB packet still open after 5s", i)
		}
	}
	gm.WaitRecord(func(r harness.LogRecord) bool { return strings.Contains(r["msg"], "oversized packet") })

	under := attack(64<<10 - 1)
	time.Sleep(time.Second)
	afterUnder := rssKB(t, gm.PID())
	t.Logf("RSS: %d kB before, %d kB after 150 x 1 MiB-1 declared, %d kB after 150 x 64 KiB-1 half sent", before, afterHuge, afterUnder)
	// go-milter alone took RSS from 12 to 168 MB with the first attack.
	if afterHuge-before > 16<<10 {
		t.Errorf("RSS grew %d kB under 150 huge declared packets, want under 16 MB", afterHuge-before)
	}
	if afterUnder-before > 40<<10 {
		t.Errorf("RSS grew %d kB under 150 half-sent 64 KiB packets, want under 40 MB", afterUnder-before)
	}
	if code, err := milterSession("tcp", gm.Addr, "192.0.2.65", "t60-after@"+harness.Domain); err != nil || code != 451 {
		t.Fatalf("session during the attack: %d %v", code, err)
	}
	for _, c := range under {
		c.Close()
	}
	stillRunning(t, gm)
}

// TestT60FileDescriptorLimit: with RLIMIT_NOFILE (set with prlimit on the
// running process) below the number of connections, accept fails with
// EMFILE on both front ends; greymilter backs off and goes on instead of
// exiting, and once descriptors are free again both answer.
func TestT60FileDescriptorLimit(t *testing.T) {
	t.Parallel()
	harness.Require(t, "prlimit")
	gm := harness.Greymilter(t, "--policy-socket", "inet:127.0.0.1:0")
	paddr := gm.PolicyAddr()
	pid := gm.PID()
	base := openFDs(t, pid)
	limit := base + 10
	if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+strconv.Itoa(limit)+":"+strconv.Itoa(limit)).CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v\n%s", err, out)
	}
	// Each front end gets more connections than the limit leaves room
	// for, so both meet EMFILE whichever of them accepts first.
	const each = 30
	conns := make([]net.Conn, 2*each)
	for i := range conns {
		addr := gm.Addr
		if i >= each {
			addr = paddr
		}
		conns[i] = dialTCP(t, addr)
	}
	for _, fe := range []string{"milter", "policy"} {
		gm.WaitRecord(func(r harness.LogRecord) bool {
			return r["component"] == fe && strings.HasPrefix(r["msg"], "accept failed")
		})
	}
	time.Sleep(2 * time.Second)
	stillRunning(t, gm)
	t.Logf("open files %d at start, limit %d, %d with %d milter and %d policy connections", base, limit, openFDs(t, pid), each, each)

	// Free the descriptors: both front ends answer again.
	for _, c := range conns {
		c.Close()
	}
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		code, err := milterSession("tcp", gm.Addr, "192.0.2.66", "t60-fd@"+harness.Domain)
		if err == nil && code == 451 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no milter session answered 20s after descriptors were freed: %d %v\n%s", code, err, gm.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("milter answered %v after the connections closed", time.Since(start).Round(time.Millisecond))
	c := dialTCP(t, paddr)
	if _, err := c.Write([]byte("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.67\nsender=a@client.example\nrecipient=t60-fd-policy@" + harness.Domain + "\n\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "action=") {
		t.Fatalf("policy after descriptors were freed: %q %v", line, err)
	}
	for _, fe := range []string{"milter", "policy"} {
		gm.WaitRecord(func(r harness.LogRecord) bool {
			return r["component"] == fe && r["msg"] == "accepting connections again"
		})
	}
	stillRunning(t, gm)
}
