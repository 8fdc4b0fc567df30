package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:6060", true},
		{"127.0.0.2:6060", true},
		{"[::1]:6060", true},
		{"localhost:6060", true},
		{"0.0.0.0:6060", false},
		{":6060", false},
		{"192.0.2.1:6060", false},
		{"[::]:6060", false},
		{"example.com:6060", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		if err := checkLoopback(tt.addr); (err == nil) != tt.ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}

func TestPprofListenRefusesOtherAddresses(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"--db", ":memory:", "-s", "inet:127.0.0.1:0", "--pprof-listen", "0.0.0.0:0"}, io.Discard, &stderr); code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, stderr.String())
	}
	if !strings.Contains(stderr.String(), "--pprof-listen") {
		t.Errorf("message %q does not name --pprof-listen", stderr.String())
	}
}

func TestPprofListenServesProfiles(t *testing.T) {
	a, _, err := testApp(t, "--db", ":memory:", "-s", "inet:127.0.0.1:0", "--pprof-listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var url string
	for _, s := range a.services {
		if name, ok := strings.CutPrefix(s.name, "pprof "); ok {
			url = name
			go s.serve()
			defer s.shutdown(context.Background())
		}
	}
	if url == "" {
		t.Fatal("no pprof service")
	}
	resp, err := http.Get(url + "cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("GET %scmdline: %s %q", url, resp.Status, body)
	}
}
