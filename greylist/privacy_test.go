package greylist

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrivacyKeys(t *testing.T) {
	secret := []byte(NewSecret())
	p1, err := NewPrivacy(secret)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := NewPrivacy(secret) // another host with the same secret
	other, _ := NewPrivacy([]byte(NewSecret()))
	k := Key{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "a@example.org"}
	h := p1.Key(k)
	if h != p2.Key(k) {
		t.Errorf("two holders of one secret disagree: %v, %v", h, p2.Key(k))
	}
	if h == other.Key(k) {
		t.Error("another secret gives the same keys")
	}
	if h.Sender == h.Recipient {
		t.Error("the same address as sender and recipient gives the same key")
	}
	for _, part := range []string{h.Client, h.Sender, h.Recipient, p1.Domain("example.org")} {
		if len(part) != 32 || strings.Contains(part, "example") || strings.Contains(part, "192.0.2") {
			t.Errorf("hashed part %q", part)
		}
	}
	if p1.Client("spf:example.org") == p1.Domain("example.org") {
		t.Error("labels do not separate clients from domains")
	}
	if p1.Fingerprint() != p2.Fingerprint() || p1.Fingerprint() == other.Fingerprint() {
		t.Error("fingerprints do not follow the secret")
	}
	if _, err := NewPrivacy([]byte("short")); err == nil {
		t.Error("a short secret was accepted")
	}
}

func TestLoadSecret(t *testing.T) {
	const env = "GREYMILTER_TEST_PRIVACY_SECRET"
	file := filepath.Join(t.TempDir(), "g.db.secret")
	if _, _, err := LoadSecret(file, env, false); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file without create: %v, want not-exist", err)
	}
	s1, created, err := LoadSecret(file, env, true)
	if err != nil || !created || len(s1) != 64 {
		t.Fatalf("create: %q %v %v", s1, created, err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v (%v), want 0600", fi.Mode(), err)
	}
	s2, created, err := LoadSecret(file, env, true)
	if err != nil || created || string(s2) != string(s1) {
		t.Fatalf("read again: %q %v %v, want %q", s2, created, err, s1)
	}
	t.Setenv(env, " "+string(s1)+"\n")
	s3, _, err := LoadSecret(filepath.Join(t.TempDir(), "none"), env, false)
	if err != nil || string(s3) != string(s1) {
		t.Fatalf("from the environment: %q %v", s3, err)
	}
	t.Setenv(env, "short")
	if _, _, err := LoadSecret(file, env, false); err == nil || !strings.Contains(err.Error(), "$"+env) {
		t.Errorf("short secret in the environment: %v", err)
	}
}
