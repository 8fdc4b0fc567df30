package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestPolicyFlagErrorsExit2(t *testing.T) {
	tests := []flagCase{
		{[]string{"--policy-socket", "carrier-pigeon:127.0.0.1:1"}, "--policy-socket"},
		{[]string{"--policy-socket", "inet:127.0.0.1:notaport"}, "--policy-socket"},
		{[]string{"--policy-socket-mode", "999"}, "--policy-socket-mode"},
		{[]string{"--policy-idle-timeout", "soon"}, "--policy-idle-timeout"},
		{[]string{"--policy-socket", "inet:127.0.0.1:0", "--policy-idle-timeout", "0"}, "--policy-idle-timeout"},
	}
	wantUsageErrors(t, []string{"--db", ":memory:", "--socket", "inet:127.0.0.1:0"}, tests)
}

func TestHelpListsPolicyFlags(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"--help"}, &stdout, io.Discard); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"--policy-socket string", "--policy-socket-mode", "(default 0660)", "--policy-idle-timeout", "(default 5m30s)", "--policy-close-after-reply"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
