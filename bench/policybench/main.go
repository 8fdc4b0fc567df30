// Command policybench measures greymilter's policy server against postgrey
// on the same request stream, in one run.
//
// For each server and each concurrency it starts the server afresh on a
// loopback port with a new database in a temporary directory, opens one
// connection per worker (as Postfix's smtpd processes do) and sends each
// worker's share of a seeded stream of Postfix RCPT requests: half of them
// first-time triplets, half retries of triplets the worker sent before
// (which pass once the server's delay is over). Both servers run with the
// same delay, their default client whitelists and default logging, and
// without auto-whitelisting, so that every first-time triplet must be
// deferred: one that is not counts as a mismatch. It prints requests per
// second, latency percentiles and resident memory for each run, and the
// ratio of greymilter's rate to postgrey's and to a null server's: the same
// policy front end with a decider that passes everything, the ceiling of the
// protocol on this machine.
//
//	go run ./bench/policybench -c 1,8,32 -n 20000
//
// greymilter is built from this module unless --greymilter names a binary.
// postgrey is Debian's /usr/sbin/postgrey; run as root it drops to the
// postgrey user, which is given the database directory.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/policyd"
)

func main() {
	var (
		greymilter = flag.String("greymilter", "", "greymilter binary (default: build ./cmd/greymilter)")
		postgrey   = flag.String("postgrey", "/usr/sbin/postgrey", "postgrey script")
		conc       = flag.String("c", "1,8,32", "concurrencies (connections), comma separated")
		n          = flag.Int("n", 20000, "requests per run")
		maxTime    = flag.Duration("max-time", 30*time.Second, "hard cap of one run")
		delay      = flag.Int("delay", 2, "greylisting delay of both servers, seconds")
		seed       = flag.Uint64("seed", 1, "seed of the request stream")
		jsonOut    = flag.Bool("json", false, "also print one JSON line per run")
		runs       = flag.Int("runs", 1, "runs of each server at each concurrency; the run with the median rate is shown")
		only       = flag.String("only", "", "run only this server (greymilter, postgrey or null)")
		gmArgs     = flag.String("greymilter-args", "", "more greymilter flags, space separated (e.g. --pprof-listen 127.0.0.1:6060)")
		serveNull  = flag.String("serve-null", "", "internal: be the null policy server on this address")
	)
	flag.Parse()
	if *serveNull != "" {
		if err := nullServer(*serveNull); err != nil {
			fmt.Fprintln(os.Stderr, "policybench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*greymilter, *postgrey, *conc, *n, *maxTime, *delay, *seed, *jsonOut, *runs, *only, strings.Fields(*gmArgs)); err != nil {
		fmt.Fprintln(os.Stderr, "policybench:", err)
		os.Exit(1)
	}
}

func run(gmBin, pgBin, concList string, n int, maxTime time.Duration, delay int, seed uint64, jsonOut bool, runs int, only string, gmArgs []string) error {
	var concs []int
	for _, s := range strings.Split(concList, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			return fmt.Errorf("-c: bad concurrency %q", s)
		}
		concs = append(concs, c)
	}
	tmp, err := os.MkdirTemp("", "policybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if gmBin == "" {
		gmBin = filepath.Join(tmp, "greymilter")
		if out, err := exec.Command("go", "build", "-o", gmBin, "./cmd/greymilter").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/greymilter (run from the module root): %v\n%s", err, out)
		}
	}
	if _, err := os.Stat(pgBin); err != nil {
		return fmt.Errorf("postgrey: %w (apt-get install postgrey)", err)
	}

	var servers []server
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, s := range []server{greymilterServer(gmBin, delay, gmArgs), postgreyServer(pgBin, delay), nullPolicyServer(self)} {
		if only == "" || only == s.name {
			servers = append(servers, s)
		}
	}
	var results []result
	for _, c := range concs {
		stream := newStream(seed+uint64(c), c, n)
		// Servers take turns run by run, so that a disturbance of the
		// machine falls on both alike.
		all := make([][]result, len(servers))
		for range max(runs, 1) {
			for i, s := range servers {
				r, err := measure(tmp, s, c, stream, maxTime)
				if err != nil {
					return fmt.Errorf("%s at concurrency %d: %w", s.name, c, err)
				}
				all[i] = append(all[i], r)
				fmt.Fprintf(os.Stderr, "%s c=%d: %d requests in %.1fs, %.0f/s, p99 %.2f ms, %d errors\n",
					r.Server, c, r.Requests, r.Seconds, r.RPS, r.P99ms, r.Errors)
				if jsonOut {
					b, _ := json.Marshal(r)
					fmt.Println(string(b))
				}
			}
		}
		for _, rs := range all {
			slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.RPS, b.RPS) })
			results = append(results, rs[len(rs)/2])
		}
	}
	report(os.Stdout, results)
	return nil
}

// server knows how to start one policy server.
type server struct {
	name string
	// cmd returns the command that serves the policy protocol on port
	// with its state in dir.
	cmd func(dir string, port int) (*exec.Cmd, error)
}

func greymilterServer(bin string, delay int, extra []string) server {
	return server{name: "greymilter", cmd: func(dir string, port int) (*exec.Cmd, error) {
		milterPort, err := freePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin,
			"--socket", fmt.Sprintf("inet:127.0.0.1:%d", milterPort),
			"--policy-socket", fmt.Sprintf("inet:127.0.0.1:%d", port),
			"--db", filepath.Join(dir, "greymilter.db"),
			"--delay", strconv.Itoa(delay), "--auto-whitelist-clients", "0",
			// postgrey does no SPF; and nothing may leave loopback: a
			// lookup would go to the discard port and show as latency.
			"--spf-identity=false", "--dns", "127.0.0.1:9")
		cmd.Args = append(cmd.Args, extra...)
		return cmd, nil
	}}
}

func postgreyServer(script string, delay int) server {
	return server{name: "postgrey", cmd: func(dir string, port int) (*exec.Cmd, error) {
		args := []string{"--inet", fmt.Sprintf("127.0.0.1:%d", port), "--dbdir", dir, "--delay", strconv.Itoa(delay), "--auto-whitelist-clients=0"}
		if os.Geteuid() == 0 {
			// Net::Server drops to --user (default postgrey), which
			// must own the database directory.
			u, err := user.Lookup("postgrey")
			if err != nil {
				return nil, fmt.Errorf("postgrey user: %w", err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(dir, uid, gid); err != nil {
				return nil, err
			}
			// ... and reach it through the private parent.
			if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
				return nil, err
			}
		} else {
			u, err := user.Current()
			if err != nil {
				return nil, err
			}
			g, err := user.LookupGroupId(u.Gid)
			if err != nil {
				return nil, err
			}
			args = append(args, "--user", u.Username, "--group", g.Name)
		}
		return exec.Command(script, args...), nil
	}}
}

// nullPolicyServer is greymilter's policy front end in front of a decider
// that passes everything: the ceiling of the protocol on this machine.
func nullPolicyServer(self string) server {
	return server{name: "null", cmd: func(dir string, port int) (*exec.Cmd, error) {
		return exec.Command(self, "-serve-null", fmt.Sprintf("127.0.0.1:%d", port)), nil
	}}
}

type passAll struct{}

func (passAll) Decide(context.Context, *engine.Request) engine.Verdict {
	return engine.Verdict{Action: engine.Pass}
}

func nullServer(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := policyd.New(policyd.Config{Decider: passAll{}})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.Serve(context.Background(), ln); !errors.Is(err, policyd.ErrServerClosed) {
		return err
	}
	return nil
}

// result is one run of one server at one concurrency.
type result struct {
	Server      string  `json:"server"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	Maxms       float64 `json:"max_ms"`
	Deferred    int     `json:"deferred"`
	Passed      int     `json:"passed"`
	Errors      int     `json:"errors"`
	Mismatches  int     `json:"mismatches"` // first-time triplets not deferred
	RSSKiB      int     `json:"rss_kib"`
}

// measure starts s with a fresh state directory, runs the stream against it
// and stops it.
func measure(tmp string, s server, conc int, st *stream, maxTime time.Duration) (result, error) {
	dir, err := os.MkdirTemp(tmp, s.name+"-")
	if err != nil {
		return result{}, err
	}
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	cmd, err := s.cmd(dir, port)
	if err != nil {
		return result{}, err
	}
	logf, err := os.Create(filepath.Join(tmp, s.name+".log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(addr, exited, 20*time.Second); err != nil {
		return result{}, fmt.Errorf("%w; log %s", err, logf.Name())
	}

	r := load(addr, conc, st, maxTime)
	r.Server = s.name
	if s.name == "null" {
		r.Mismatches = 0 // it defers nothing, by design
	}
	r.RSSKiB = rssKiB(cmd.Process.Pid)
	if r.Errors > 0 {
		log, _ := os.ReadFile(logf.Name())
		fmt.Fprintf(os.Stderr, "%s: %d errors; server log tail:\n%s\n", s.name, r.Errors, tail(string(log), 2000))
	}
	return r, nil
}

// load runs every worker's requests on its own connection.
func load(addr string, conc int, st *stream, maxTime time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), maxTime)
	defer cancel()
	lat := make([][]time.Duration, conc)
	stats := make([]result, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			lat[w], stats[w] = worker(ctx, addr, st.workers[w])
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	r := result{Concurrency: conc, Seconds: elapsed.Seconds()}
	var all []time.Duration
	for w := range conc {
		all = append(all, lat[w]...)
		r.Deferred += stats[w].Deferred
		r.Passed += stats[w].Passed
		r.Errors += stats[w].Errors
		r.Mismatches += stats[w].Mismatches
	}
	r.Requests = len(all)
	r.RPS = float64(len(all)) / elapsed.Seconds()
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / 1e6
	}
	r.P50ms, r.P90ms, r.P99ms, r.Maxms = pct(0.50), pct(0.90), pct(0.99), pct(1)
	return r
}

func worker(ctx context.Context, addr string, reqs []request) ([]time.Duration, result) {
	var r result
	lat := make([]time.Duration, 0, len(reqs))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		r.Errors++
		return lat, r
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, q := range reqs {
		if ctx.Err() != nil {
			break
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		t0 := time.Now()
		if _, err := io.WriteString(c, q.text); err != nil {
			r.Errors++
			break
		}
		action, err := readAnswer(br)
		if err != nil {
			r.Errors++
			break
		}
		lat = append(lat, time.Since(t0))
		switch {
		case strings.HasPrefix(action, "DEFER_IF_PERMIT"):
			r.Deferred++
		case action == "DUNNO" || strings.HasPrefix(action, "PREPEND "):
			r.Passed++
			if q.first {
				r.Mismatches++
			}
		default:
			r.Errors++
		}
	}
	return lat, r
}

func readAnswer(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\n" {
		return "", fmt.Errorf("answer %q not ended by a blank line", line)
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok {
		return "", fmt.Errorf("answer %q", line)
	}
	return action, nil
}

// stream is the seeded request sequence, split by worker.
type stream struct{ workers [][]request }

type request struct {
	text  string
	first bool // a triplet this stream sends for the first time
}

// newStream makes n requests for conc workers: each worker draws half new
// triplets (clients spread over 4096 /24s, several per /24, a tenth IPv6)
// and half retries of its own earlier triplets.
func newStream(seed uint64, conc, n int) *stream {
	rng := rand.New(rand.NewPCG(seed, 0x706f6c696379))
	st := &stream{workers: make([][]request, conc)}
	type triplet struct{ client, name, sender, rcpt string }
	seq := 0
	for w := range conc {
		var seen []triplet
		for i := range n / conc {
			var t triplet
			first := len(seen) == 0 || rng.IntN(2) == 0
			if first {
				seq++
				net24 := rng.IntN(4096)
				if rng.IntN(10) == 0 {
					t.client = fmt.Sprintf("2001:db8:%x:%x::%x", net24>>8, net24&0xff, 1+rng.IntN(16))
				} else {
					t.client = fmt.Sprintf("10.%d.%d.%d", net24>>8, net24&0xff, 1+rng.IntN(16))
				}
				t.name = fmt.Sprintf("mx%d.sender%d.example", rng.IntN(16), net24)
				t.sender = fmt.Sprintf("user%d@sender%d.example", seq, net24)
				t.rcpt = fmt.Sprintf("rcpt%d@test.example", rng.IntN(1<<20))
				seen = append(seen, t)
			} else {
				t = seen[rng.IntN(len(seen))]
			}
			text := fmt.Sprintf(requestTemplate, t.client, t.name, 30000+rng.IntN(30000), t.name, t.name, t.sender, t.rcpt, w, i)
			st.workers[w] = append(st.workers[w], request{text: text, first: first})
		}
	}
	return st
}

// requestTemplate is what Postfix 3.7 sends at RCPT TO (see
// policyd/testdata/postfix-rcpt.txt).
const requestTemplate = `request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=%s
client_name=%s
client_port=%d
reverse_client_name=%s
server_address=127.0.0.1
server_port=25
helo_name=%s
sender=%s
recipient=%s
recipient_count=0
queue_id=
instance=%x.%x.0
size=0
etrn_domain=
stress=
sasl_method=
sasl_username=
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=
encryption_cipher=
encryption_keysize=0
policy_context=

`

func report(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tconc\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tdeferred\tpassed\terrors\tmismatches\tRSS MiB\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%d\t%d\t%d\t%.1f\t\n", r.Server, r.Concurrency, r.Requests, r.RPS,
			r.P50ms, r.P90ms, r.P99ms, r.Maxms, r.Deferred, r.Passed, r.Errors, r.Mismatches, float64(r.RSSKiB)/1024)
	}
	tw.Flush()
	fmt.Fprintln(w)
	byKey := make(map[string]result)
	var concs []int
	for _, r := range rs {
		byKey[fmt.Sprint(r.Server, r.Concurrency)] = r
		if !slices.Contains(concs, r.Concurrency) {
			concs = append(concs, r.Concurrency)
		}
	}
	for _, c := range concs {
		g, ok := byKey[fmt.Sprint("greymilter", c)]
		if !ok {
			continue
		}
		var ratios []string
		if p, ok := byKey[fmt.Sprint("postgrey", c)]; ok && p.RPS > 0 {
			ratios = append(ratios, fmt.Sprintf("greymilter/postgrey %.1fx req/s (p99 %.2f vs %.2f ms)", g.RPS/p.RPS, g.P99ms, p.P99ms))
		}
		if n, ok := byKey[fmt.Sprint("null", c)]; ok && n.RPS > 0 {
			ratios = append(ratios, fmt.Sprintf("greymilter/null %.0f%% req/s (p99 %.2f vs %.2f ms)", 100*g.RPS/n.RPS, g.P99ms, n.P99ms))
		}
		if len(ratios) > 0 {
			fmt.Fprintf(w, "concurrency %d: %s\n", c, strings.Join(ratios, "; "))
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("server exited at start: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("server does not listen on " + addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
