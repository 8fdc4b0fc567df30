package main

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/engine"
)

func TestListFlagsRepeatAndAliases(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var f listFlags
	f.addFlags(fs)
	err := fs.Parse([]string{
		"--whitelist-clients", "a", "--custom-wl", "b,c", "--whitelist-clients=d",
		"--blacklist-clients", "x", "--custom-bl", "y",
		"--whitelist-recipients", "r", "--whitelist-senders", "s", "--blacklist-senders", "z",
		"--no-default-whitelist",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := f.cfg
	for _, tt := range []struct {
		got, want []string
	}{
		{c.WhitelistClients, []string{"a", "b,c", "d"}},
		{c.BlacklistClients, []string{"x", "y"}},
		{c.WhitelistRecipients, []string{"r"}},
		{c.WhitelistSenders, []string{"s"}},
		{c.BlacklistSenders, []string{"z"}},
	} {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("files %q, want %q", tt.got, tt.want)
		}
	}
	if !f.noDefault {
		t.Error("--no-default-whitelist not set")
	}
}

func TestBadListFileExits2WithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "whitelist_clients")
	if err := os.WriteFile(bad, []byte("# ok\n192.0.2.0/24\n192.0.2.999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--whitelist-clients", bad},
		{"--custom-bl", bad},
		{"--blacklist-senders", filepath.Join(dir, "missing")},
	} {
		var stderr bytes.Buffer
		args = append([]string{"--db", ":memory:", "--socket", "inet:127.0.0.1:0"}, args...)
		if code := run(args, io.Discard, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr.String())
		}
		want := bad + ":3: "
		if strings.Contains(args[len(args)-1], "missing") {
			want = "missing"
		}
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("%v: stderr %q, want it to name %q", args, stderr.String(), want)
		}
	}
}

// TestListsReloadHook builds the lists module, then edits the file and runs
// the app's SIGHUP reload: a good file takes effect, a broken one is logged
// with FILE:LINE and the previous lists stay in force.
func TestListsReloadHook(t *testing.T) {
	dir := t.TempDir()
	bl := filepath.Join(dir, "blacklist_clients")
	write := func(text string) {
		if err := os.WriteFile(bl, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("192.0.2.1\n")
	a, logs, err := testApp(t, "--db", ":memory:", "-s", "inet:127.0.0.1:0", "--blacklist-clients", bl, "--no-default-whitelist", "--trusted-networks", "")
	if err != nil {
		t.Fatal(err)
	}
	action := func(addr string) engine.Action {
		return a.engine.Decide(context.Background(), &engine.Request{ClientAddr: netip.MustParseAddr(addr)}).Action
	}
	if action("192.0.2.1") != engine.Reject || action("192.0.2.2") == engine.Reject {
		t.Fatal("the list read at start is not in force")
	}
	write("192.0.2.2\n")
	a.reload()
	if action("192.0.2.1") == engine.Reject || action("192.0.2.2") != engine.Reject {
		t.Fatal("the reloaded list is not in force")
	}
	write("192.0.2.1\n192.0.2.x\n")
	a.reload()
	if !strings.Contains(logs.String(), bl+":2: ") {
		t.Errorf("log %q does not name %s:2", logs.String(), bl)
	}
	if action("192.0.2.1") == engine.Reject || action("192.0.2.2") != engine.Reject {
		t.Fatal("a broken file replaced the lists in force")
	}
}
