package main

import (
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSyslogUsesMailFacilityAndLevels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := newSyslogHandler("unixgram", path, "greymilter", &slog.HandlerOptions{Level: slog.LevelInfo}, false)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h).With("filter", "gm")
	log.Debug("not sent")
	log.Info("decision", "action", "greylist")
	log.Error("purge failed")

	// LOG_MAIL is facility 2: priority = 2*8 + severity.
	for _, want := range []string{"<22>", "<19>"} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, want) || !strings.Contains(msg, "greymilter") || !strings.Contains(msg, "filter=gm") {
			t.Errorf("syslog message %q, want priority %s, tag and attributes", msg, want)
		}
		if strings.Contains(msg, "time=") || strings.Contains(msg, "not sent") {
			t.Errorf("syslog message %q carries a time stamp or a filtered record", msg)
		}
	}
}
