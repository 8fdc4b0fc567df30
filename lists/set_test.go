package lists

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSetCheck(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{
		WhitelistClients:    []string{writeFile(t, dir, "wc", "192.0.2.0/24\nfriend.example\n"), writeFile(t, dir, "wc2", "198.51.100.7\n")},
		WhitelistRecipients: []string{writeFile(t, dir, "wr", "postmaster@\n")},
		WhitelistSenders:    []string{writeFile(t, dir, "ws", "news@shop.example\n")},
		BlacklistClients:    []string{writeFile(t, dir, "bc", "192.0.2.66\nspam.example\n")},
		BlacklistSenders:    []string{writeFile(t, dir, "bs", "\n\nspammer@shop.example\n")},
	}
	s, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Rules() != 8 {
		t.Errorf("Rules() = %d, want 8", s.Rules())
	}
	cases := []struct {
		name                            string
		addr, client, sender, recipient string
		bare                            string
		want                            Verdict
		file                            string
		line                            int
		subject                         string
	}{
		{"unlisted", "203.0.113.1", "mx.other.example", "a@other.example", "b@here.example", "", Unlisted, "", 0, ""},
		{"client network", "192.0.2.10", "", "a@other.example", "b@here.example", "", Whitelisted, "wc", 1, "client"},
		{"client name", "203.0.113.1", "mx.friend.example", "a@other.example", "b@here.example", "", Whitelisted, "wc", 2, "client"},
		{"second file", "198.51.100.7", "", "a@other.example", "b@here.example", "", Whitelisted, "wc2", 1, "client"},
		{"recipient", "203.0.113.1", "", "a@other.example", "postmaster@here.example", "", Whitelisted, "wr", 1, "recipient"},
		{"sender", "203.0.113.1", "", "news+123@shop.example", "b@here.example", "", Whitelisted, "ws", 1, "sender"},
		{"blacklisted client inside whitelisted network", "192.0.2.66", "", "a@other.example", "b@here.example", "", Blacklisted, "bc", 1, "client"},
		{"blacklisted name beats whitelisted recipient", "203.0.113.1", "relay.spam.example", "a@other.example", "postmaster@here.example", "", Blacklisted, "bc", 2, "client"},
		{"whitelisted bare sender", "203.0.113.1", "", "prvs=0011aabb=news@shop.example", "b@here.example", "news@shop.example", Whitelisted, "ws", 1, "sender"},
		{"blacklisted bare sender", "203.0.113.1", "", "SRS0=H=TT=shop.example=spammer@fwd.example", "b@here.example", "spammer@shop.example", Blacklisted, "bs", 3, "sender"},
		{"blacklisted sender beats whitelisted client", "192.0.2.10", "", "spammer@shop.example", "b@here.example", "", Blacklisted, "bs", 3, "sender"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.Check(netip.MustParseAddr(c.addr), c.client, c.sender, c.bare, c.recipient)
			var want Result
			if c.want != Unlisted {
				want = Result{c.want, Source{filepath.Join(dir, c.file), c.line}, c.subject}
			}
			if r != want {
				t.Errorf("Check = %+v, want %+v", r, want)
			}
		})
	}
}

func TestSetReload(t *testing.T) {
	dir := t.TempDir()
	bl := writeFile(t, dir, "bl", "192.0.2.1\n")
	s, err := Load(Config{BlacklistClients: []string{bl}})
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	check := func(a netip.Addr, want Verdict) {
		t.Helper()
		if r := s.Check(a, "", "", "", ""); r.Verdict != want {
			t.Errorf("%v: %v, want %v", a, r.Verdict, want)
		}
	}

	writeFile(t, dir, "bl", "192.0.2.2\n")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	check(a1, Unlisted)
	check(a2, Blacklisted)

	// A broken line keeps the old lists in force and names the line.
	writeFile(t, dir, "bl", "192.0.2.1\n# fine\n192.0.2.300\n")
	err = s.Reload()
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != bl || pe.Line != 3 {
		t.Fatalf("Reload error %v, want a ParseError at %s:3", err, bl)
	}
	if want := bl + ":3: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start %q", err, want)
	}
	check(a1, Unlisted)
	check(a2, Blacklisted)

	// So does a missing file.
	if err := os.Remove(bl); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), bl) {
		t.Fatalf("Reload of a missing file: %v, want an error naming it", err)
	}
	check(a2, Blacklisted)
}

func TestLoadError(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good", "example.com\n")
	bad := writeFile(t, dir, "bad", "example.com\n\nexa mple.com\n")
	_, err := Load(Config{WhitelistClients: []string{good}, WhitelistSenders: []string{bad}})
	if err == nil || !strings.HasPrefix(err.Error(), bad+":3: ") {
		t.Fatalf("Load error %v, want one at %s:3", err, bad)
	}
}

// TestNullSenderRule checks that <> lists the null sender in a sender list
// and is refused, with its line, in a recipient list where it could never
// match.
func TestNullSenderRule(t *testing.T) {
	dir := t.TempDir()
	bs := writeFile(t, dir, "bs", "spammer@shop.example\n<>\n")
	s, err := Load(Config{BlacklistSenders: []string{bs}})
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Blacklisted, Source{bs, 2}, "sender"}
	if r := s.Check(netip.MustParseAddr("192.0.2.1"), "", "", "", "b@here.example"); r != want {
		t.Errorf("null sender: %+v, want %+v", r, want)
	}
	wr := writeFile(t, dir, "wr", "postmaster@\n\n<>\n")
	_, err = Load(Config{WhitelistRecipients: []string{wr}})
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != wr || pe.Line != 3 || !strings.Contains(err.Error(), "a recipient is never empty") {
		t.Fatalf("Load of <> as a recipient: %v, want a ParseError at %s:3 saying a recipient is never empty", err, wr)
	}
}

// TestSetConcurrentReload runs Check from several goroutines while the
// lists are reloaded (run with -race). Every answer must come from one
// consistent version: the two rules of a version always agree.
func TestSetConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	wl := writeFile(t, dir, "wl", "192.0.2.1\n")
	bl := writeFile(t, dir, "bl", "192.0.2.2\n")
	s, err := Load(Config{WhitelistClients: []string{wl}, BlacklistClients: []string{bl}})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := netip.MustParseAddr("192.0.2.1")
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r := s.Check(a, "", "", "", ""); r.Verdict == Unlisted {
					t.Error("192.0.2.1 unlisted during a reload")
					return
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		// Alternate the address between the two lists; it is always on one.
		w, b := "192.0.2.1\n", "192.0.2.2\n"
		if i%2 == 1 {
			w, b = b, w
		}
		writeFile(t, dir, "wl", w)
		writeFile(t, dir, "bl", b)
		if err := s.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestDefaultWhitelist(t *testing.T) {
	s, err := Load(Config{DefaultWhitelist: true})
	if err != nil {
		t.Fatalf("shipped whitelist does not parse: %v", err)
	}
	for _, c := range []struct {
		addr, name string
		want       bool
	}{
		{"192.0.2.1", "mail-wr1-f41.google.com", true},
		{"209.85.128.41", "", true},
		{"2a00:1450:4864:20::33a", "", true},
		{"192.0.2.1", "mail-am6eur05on2040.outbound.protection.outlook.com", true},
		{"40.107.22.40", "", true},
		{"17.58.63.1", "", true},
		{"192.0.2.1", "a48-110.smtp-out.amazonses.com", true},
		{"167.89.1.1", "", true},
		{"192.0.2.1", "mout.gmx.net", true},
		{"192.0.2.1", "vger.kernel.org", true},
		{"192.0.2.1", "mail.example.com", false},
		{"192.0.2.1", "notgoogle.com", false},
		{"192.0.2.1", "", false},
	} {
		r := s.Check(netip.MustParseAddr(c.addr), c.name, "", "", "")
		if got := r.Verdict == Whitelisted; got != c.want {
			t.Errorf("%s %s: %+v, want whitelisted %v", c.addr, c.name, r, c.want)
		}
		if r.Verdict == Whitelisted && r.Source.File != DefaultWhitelistName {
			t.Errorf("%s %s: source %v, want the default list", c.addr, c.name, r.Source)
		}
	}
	off, err := Load(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if r := off.Check(netip.MustParseAddr("209.85.128.41"), "mail.google.com", "", "", ""); r.Verdict != Unlisted {
		t.Errorf("without the default whitelist: %+v, want unlisted", r)
	}
}
