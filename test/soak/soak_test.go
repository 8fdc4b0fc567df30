// Package soak runs the real greymilter under mixed load for a while and
// fails when its memory, goroutines or open files keep growing.
package soak

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// defaultSoak is the short form run by `make test`; `make soak` sets
// SOAK_S=600.
const defaultSoak = 30 * time.Second

// sample is one look at the process.
type sample struct {
	at                    time.Duration
	rssKB, goroutines, fd int
}

// TestSoak runs greymilter with both front ends at once (milter and
// policy, loaded by greyload), DNS lists on the in-process DNS server and
// a SIGHUP every few seconds, for SOAK_S seconds. It samples the resident
// memory, goroutines (from the pprof endpoint) and open files
// (/proc/PID/fd), and fails when one keeps growing: after a warm-up, the
// median of the last third of the samples must not exceed the median of
// the first third by more than a tolerance that noise (GC cycles, bursts
// of connections) stays under.
func TestSoak(t *testing.T) {
	harness.Require(t)
	length := defaultSoak
	if v := os.Getenv("SOAK_S"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("SOAK_S=%q: want a number of seconds, at least 10", v)
		}
		length = time.Duration(n) * time.Second
	}
	dns := dnstest.Start(t, "../e2e/testdata/dnsbl.zone")
	// State must reach a steady size for growth to mean a leak: triplets
	// are forgotten after a tenth of the run, purged every quarter of that.
	keep := max(10*time.Second, length/10)
	// A triplet's retry comes in the run of its first attempt, and a run
	// lasts at most half of keep: a retry is never purged before it comes,
	// even when greyload, starved of CPU, sends it long after it was due
	// (once 10.5 s after the first attempt, in a run of 15.8 s, on a
	// machine running two test suites).
	runCap := keep / 2
	gm := harness.Greymilter(t, "--policy-socket", "inet:127.0.0.1:0", "--dns", dns.Addr(),
		"-a", "bl.e2e.test", "--addwl", "wl.e2e.test", "--dns-max-ttl", "2s",
		"--delay", "1s", "--auto-whitelist-clients", "0", "--pprof-listen", "127.0.0.1:0",
		"--max-age", seconds(keep), "--purge-unverified", seconds(keep), "--purge-interval", seconds(keep/4))
	greyload := harness.GoBinary(t, "./cmd/greyload")
	goroutineURL := gm.ServiceURL("pprof") + "goroutine?debug=1"
	pid := gm.PID()

	start := time.Now()
	end := start.Add(length)
	var wg sync.WaitGroup
	var loadMu sync.Mutex
	var runs, failures int
	var failed []string
	// Each front end gets its own bounded greyload runs, one after the
	// other, each with a fresh seed (new triplets), until the end.
	for i, target := range []string{"--milter=" + gm.Socket, "--policy=inet:" + gm.PolicyAddr()} {
		wg.Go(func() {
			for seed := uint64(i*1_000_000 + 1); time.Until(end) > 5*time.Second; seed++ {
				maxTime := min(time.Until(end), runCap)
				// Many senders and recipients: a first-time triplet of one run
				// is not, by chance, one that an earlier run made known.
				out, err := exec.Command(greyload, target, "-c", "2", "-n", "2000", "--delay", "1s",
					"--senders", "200000", "--recipients", "200000",
					"--max-time", maxTime.String(), "--seed", strconv.FormatUint(seed, 10)).CombinedOutput()
				loadMu.Lock()
				runs++
				// A run cut short by --max-time is not a failure;
				// wrong answers and errors are.
				if err != nil && !strings.Contains(string(out), "stopped by    time") {
					failures++
					if len(failed) < 3 {
						failed = append(failed, string(out))
					}
				}
				loadMu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for time.Until(end) > 0 {
			time.Sleep(3 * time.Second)
			gm.Signal(syscall.SIGHUP)
		}
	})

	every := max(time.Second, length/120)
	var samples []sample
	for time.Now().Before(end) {
		time.Sleep(every)
		s := sample{at: time.Since(start), rssKB: rssKB(t, pid), fd: openFiles(t, pid), goroutines: goroutines(t, goroutineURL)}
		samples = append(samples, s)
	}
	wg.Wait()
	if exited, err := gm.Exited(); exited {
		t.Fatalf("greymilter died under the soak: %v", err)
	}
	if n, want := strings.Count(gm.Log(), "(SIGHUP)"), int(length/(3*time.Second))-2; n < want {
		t.Errorf("%d reloads logged, want at least %d", n, want)
	}
	if dns.Total() == 0 {
		t.Error("no DNS list lookup reached the DNS server")
	}
	loadMu.Lock()
	t.Logf("%d greyload runs, %d failed", runs, failures)
	if failures > 0 {
		t.Errorf("greyload failed %d of %d runs; first:\n%s", failures, runs, strings.Join(failed, "\n---\n"))
	}
	loadMu.Unlock()

	// The first fifth is warm-up: caches, the index (up to the purge's
	// steady size) and the connection pools fill.
	steady := samples[len(samples)/5:]
	if len(steady) < 6 {
		t.Fatalf("only %d samples after the warm-up", len(steady))
	}
	first, last := steady[0], steady[len(steady)-1]
	t.Logf("after warm-up at %v: RSS %d kB, goroutines %d, open files %d", first.at.Round(time.Second), first.rssKB, first.goroutines, first.fd)
	t.Logf("at the end at %v:    RSS %d kB, goroutines %d, open files %d", last.at.Round(time.Second), last.rssKB, last.goroutines, last.fd)
	third := len(steady) / 3
	for _, m := range []struct {
		name  string
		get   func(sample) int
		ratio float64 // allowed growth of the median, relative
		slack int     // and absolute
	}{
		{"RSS kB", func(s sample) int { return s.rssKB }, 0.25, 8 << 10},
		{"goroutines", func(s sample) int { return s.goroutines }, 0.25, 16},
		{"open files", func(s sample) int { return s.fd }, 0.25, 8},
	} {
		early, late := median(steady[:third], m.get), median(steady[len(steady)-third:], m.get)
		limit := int(float64(early)*(1+m.ratio)) + m.slack
		t.Logf("%s: median %d in the first third, %d in the last (limit %d)", m.name, early, late, limit)
		if late > limit {
			t.Errorf("%s keeps growing: median %d in the first third of the run, %d in the last (limit %d)", m.name, early, late, limit)
		}
	}
	dumpSamples(t, samples)
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d/time.Second)) + "s" }

func median(ss []sample, get func(sample) int) int {
	v := make([]int, len(ss))
	for i, s := range ss {
		v[i] = get(s)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// rssKB reads the resident set size of process pid.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatalf("RSS: no VmRSS in /proc/%d/status", pid)
	return 0
}

// openFiles counts the file descriptors of process pid.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("open files: %v", err)
	}
	return len(ents)
}

// goroutines reads the total of Go's goroutine profile.
func goroutines(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("goroutines: %v", err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total")))
	if err != nil {
		t.Fatalf("goroutines: %q: %v", line, err)
	}
	return n
}

// dumpSamples writes the samples as CSV where SOAK_CSV says, for a graph.
func dumpSamples(t *testing.T, samples []sample) {
	path := os.Getenv("SOAK_CSV")
	if path == "" {
		return
	}
	var b strings.Builder
	b.WriteString("seconds,rss_kb,goroutines,open_files\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.0f,%d,%d,%d\n", s.at.Seconds(), s.rssKB, s.goroutines, s.fd)
	}
	if err := os.WriteFile(filepath.Clean(path), []byte(b.String()), 0o644); err != nil {
		t.Errorf("SOAK_CSV: %v", err)
	}
}
