package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// gauge reads one unlabelled gauge from greymilter's /metrics.
func gauge(t *testing.T, gm *harness.GreymilterProcess, name string) float64 {
	t.Helper()
	m, ok := sample(scrape(t, gm), name)
	if !ok {
		t.Fatalf("%s not in the metrics", name)
	}
	return m.GetGauge().GetValue()
}

var greylistWait = regexp.MustCompile(`^451 4\.7\.1 Greylisted, please try again in (\d+) seconds$`)

// TestT72ReloadConfigFile: SIGHUP reads the config file again. A changed
// delay applies to the next new triplet at once; an option that cannot
// change at runtime is named as needing a restart; a broken file keeps the
// configuration in force, and the metrics say the last reload failed.
func TestT72ReloadConfigFile(t *testing.T) {
	t.Parallel()
	conf := filepath.Join(t.TempDir(), "greymilter.conf")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# as deployed\ndelay = 1h\n")
	start := time.Now()
	gm := harness.Greymilter(t, "--config", conf, "--metrics-listen", "127.0.0.1:0")
	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
	wait := func(rcpt string) int {
		t.Helper()
		res := harness.Send(t, pf.Addr, harness.Envelope{ClientAddr: "192.0.2.172", ClientName: "mail.sender.example", Helo: "mail.sender.example",
			From: "alice@sender.example", To: []string{rcpt + "@" + harness.Domain}})
		if len(res.Rcpt) != 1 {
			t.Fatalf("%+v", res)
		}
		m := greylistWait.FindStringSubmatch(res.Rcpt[0].String())
		if m == nil {
			t.Fatalf("%s: %q, want a greylisting deferral", rcpt, res.Rcpt[0])
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	reloads := func(msg string) int {
		n := 0
		for _, r := range gm.Records() {
			if strings.HasPrefix(r["msg"], msg) {
				n++
			}
		}
		return n
	}

	if w := wait("t72-a"); w < 3500 || w > 3600 {
		t.Fatalf("before the reload: wait %d, want the configured hour", w)
	}
	if ok := gauge(t, gm, "greymilter_config_last_reload_success"); ok != 1 {
		t.Errorf("after start: greymilter_config_last_reload_success %v, want 1", ok)
	}
	if at := gauge(t, gm, "greymilter_config_last_reload_timestamp_seconds"); at < float64(start.Unix()) || at > float64(time.Now().Unix()) {
		t.Errorf("after start: reload timestamp %v, want the start (%d..%d)", at, start.Unix(), time.Now().Unix())
	}

	write("# as deployed\ndelay = 2m\npurge-interval = 2h\n")
	hup := time.Now()
	gm.Signal(syscall.SIGHUP)
	gm.WaitRecord(func(r harness.LogRecord) bool { return r["msg"] == "configuration reloaded" })
	if w := wait("t72-b"); w < 100 || w > 120 {
		t.Errorf("a new triplet after the reload: wait %d, want the new 2 minutes", w)
	}
	rec := gm.WaitRecord(func(r harness.LogRecord) bool {
		return strings.HasPrefix(r["msg"], "option changed; it needs a restart")
	})
	if rec["option"] != "purge-interval" || rec["configured"] != "2h0m0s" {
		t.Errorf("restart warning %v, want it to name purge-interval and its new value", rec)
	}
	if at := gauge(t, gm, "greymilter_config_last_reload_timestamp_seconds"); at < float64(hup.Unix()) {
		t.Errorf("after the reload: timestamp %v, before the SIGHUP at %d", at, hup.Unix())
	}

	write("# a typo\ndelay = 10m\nfrobnicate = yes\n")
	failedBefore := reloads("reload failed")
	gm.Signal(syscall.SIGHUP)
	rec = gm.WaitRecord(func(r harness.LogRecord) bool { return strings.HasPrefix(r["msg"], "reload failed") })
	if !strings.Contains(rec["err"], conf+":3: unknown option") {
		t.Errorf("reload error %q, want it to name %s:3", rec["err"], conf)
	}
	if reloads("reload failed") <= failedBefore {
		t.Fatal("no new reload failure logged")
	}
	if ok := gauge(t, gm, "greymilter_config_last_reload_success"); ok != 0 {
		t.Errorf("after a broken reload: greymilter_config_last_reload_success %v, want 0", ok)
	}
	if w := wait("t72-c"); w < 100 || w > 120 {
		t.Errorf("after a broken reload: wait %d, want the 2 minutes still in force (not the broken file's 10)", w)
	}
}

// TestT72PurgesDespiteFrequentReloads: reloads more frequent than
// --purge-interval do not restart its timer, so purges still run (a SIGHUP
// every few seconds once kept every purge from running and the store grew
// without bound).
func TestT72PurgesDespiteFrequentReloads(t *testing.T) {
	t.Parallel()
	gm := harness.Greymilter(t, "--purge-interval", "1s")
	stop := make(chan struct{})
	hups := make(chan int)
	go func() {
		n := 0
		defer func() { hups <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				gm.Signal(syscall.SIGHUP)
				n++
			}
		}
	}()
	gm.WaitRecords(func(r harness.LogRecord) bool { return r["msg"] == "purged" }, 2)
	close(stop)
	if n := <-hups; n < 3 {
		t.Fatalf("only %d SIGHUPs before two purges: the test proves nothing", n)
	}
}
