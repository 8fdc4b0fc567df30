package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBadRulesFileExits2WithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "rules")
	if err := os.WriteFile(bad, []byte("# ok\nrecipient a@example.com => mode never\nrecipient b@example.com => mode sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantUsageErrors(t, []string{"--db", ":memory:", "--socket", "inet:127.0.0.1:0", "--dns", "127.0.0.1:53"}, []flagCase{
		{[]string{"--rules", bad}, bad + `:3: mode "sometimes"`},
		{[]string{"--rules", filepath.Join(dir, "missing")}, "missing"},
		{[]string{"--reject-threshold", "-1"}, "--reject-threshold"},
		{[]string{"--dnsbl-action", "maybe"}, "--dnsbl-action"},
		{[]string{"--addbl", "bl.example:score=x"}, "score"},
	})
}
