package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	refuseRoot = false
	os.Exit(m.Run())
}

func TestRootRefusedWithoutUserOrAllowRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	refuseRoot = true
	defer func() { refuseRoot = false }()
	sock := filepath.Join(t.TempDir(), "m.sock")
	var stderr bytes.Buffer
	if code := run([]string{"--db", ":memory:", "-s", "unix:" + sock}, io.Discard, &stderr); code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, stderr.String())
	}
	if !strings.Contains(stderr.String(), "refusing to run as root") || !strings.Contains(stderr.String(), "--user") {
		t.Errorf("message %q does not say why and what to do", stderr.String())
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Error("the socket was bound before the refusal")
	}
	stderr.Reset()
	if code := run([]string{"--db", ":memory:", "-s", "unix:" + sock, "--user", "root"}, io.Discard, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "--user root") {
		t.Errorf("--user root: exit %d, stderr %q; want 2 naming --user root", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"--db", ":memory:", "-s", "unix:" + sock, "--user", "no-such-user-here"}, io.Discard, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "no-such-user-here") {
		t.Errorf("unknown --user: exit %d, stderr %q; want 2 naming the user", code, stderr.String())
	}
}
