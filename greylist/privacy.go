package greylist

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"sync"
	"time"
)

// Privacy keys what a store keeps by HMAC-SHA256 under a secret (postgrey's
// --privacy, keyed): a stolen database reveals no address, subnet or
// domain, while the same input always gives the same key, so greylisting
// works as before. Anyone who has the secret can test a guess, nobody
// else can.
type Privacy struct {
	secret []byte
	// macs holds HMAC states keyed with secret: hmac.New costs a few
	// dozen allocations, Reset none.
	macs sync.Pool
}

// MinSecretLen is the shortest secret accepted, in bytes of its text.
const MinSecretLen = 32

// NewPrivacy keys with secret (at least MinSecretLen bytes).
func NewPrivacy(secret []byte) (*Privacy, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("privacy secret too short: %d bytes, want at least %d", len(secret), MinSecretLen)
	}
	p := &Privacy{secret: append([]byte(nil), secret...)}
	p.macs.New = func() any { return hmac.New(sha256.New, p.secret) }
	return p, nil
}

// What is hashed: each part of a key under its own label, so that equal
// text in two parts (a sender that is also a recipient) gives unrelated
// keys.
const (
	labelClient    = "client"
	labelSender    = "sender"
	labelRecipient = "recipient"
	labelDomain    = "domain"
	labelCheck     = "greymilter privacy check"
)

// hashLen is how many bytes of the HMAC are kept: 128 bits, as hex.
const hashLen = 16

func (p *Privacy) hash(label, s string) string {
	m := p.macs.Get().(hash.Hash)
	m.Reset()
	var buf [128]byte
	m.Write(append(append(append(buf[:0], label...), 0), s...))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	p.macs.Put(m)
	return hex.EncodeToString(sum[:hashLen])
}

// Key returns the stored form of a triplet key.
func (p *Privacy) Key(k Key) Key {
	return Key{Client: p.Client(k.Client), Sender: p.hash(labelSender, k.Sender), Recipient: p.hash(labelRecipient, k.Recipient)}
}

// Client returns the stored form of a triplet's client: a subnet, an
// address or an identity such as "spf:example.com".
func (p *Privacy) Client(c string) string { return p.hash(labelClient, c) }

// Domain returns the stored form of a sender domain.
func (p *Privacy) Domain(d string) string { return p.hash(labelDomain, d) }

// Fingerprint identifies the secret without revealing it: it is kept in
// the database, so that a store is never used with another secret.
func (p *Privacy) Fingerprint() string { return "hmac-sha256:" + p.hash(labelCheck, "")[:16] }

// LoadSecret reads the secret of a private store: from the environment
// variable env if it is set, else from file. A missing file is created
// with a new random secret, mode 0600, when create is true; otherwise it
// is an error that wraps os.ErrNotExist.
func LoadSecret(file, env string, create bool) (secret []byte, created bool, err error) {
	if v, ok := os.LookupEnv(env); ok {
		v = strings.TrimSpace(v)
		if len(v) < MinSecretLen {
			return nil, false, fmt.Errorf("$%s: the privacy secret is %d characters, want at least %d", env, len(v), MinSecretLen)
		}
		return []byte(v), false, nil
	}
	if file == "" {
		return nil, false, fmt.Errorf("no privacy secret: give --privacy-secret FILE or set $%s", env)
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) && create {
		return newSecretFile(file)
	}
	if err != nil {
		return nil, false, fmt.Errorf("privacy secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < MinSecretLen {
		return nil, false, fmt.Errorf("privacy secret %s: %d characters, want at least %d", file, len(s), MinSecretLen)
	}
	return []byte(s), false, nil
}

// NewSecret returns a new random secret: 256 bits as hex.
func NewSecret() string {
	var raw [32]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	return hex.EncodeToString(raw[:])
}

// newSecretFile writes a new random secret to file, which must not exist.
func newSecretFile(file string) ([]byte, bool, error) {
	secret := NewSecret()
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("privacy secret: %w", err)
	}
	_, err = f.WriteString(secret + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return nil, false, fmt.Errorf("privacy secret %s: %w", file, err)
	}
	return []byte(secret), true, nil
}

// PrivateStore is a Store whose keys are hashed before the store sees
// them: the backend, its index and its cache keep working unchanged on
// the hashed keys.
type PrivateStore struct {
	Store
	P *Privacy
}

// Attempt implements Store.
func (s PrivateStore) Attempt(ctx context.Context, key Key, rules Rules, now time.Time) (Result, error) {
	return s.Store.Attempt(ctx, s.P.Key(key), rules, now)
}

// Lookup implements Store.
func (s PrivateStore) Lookup(ctx context.Context, key Key) (Record, bool, error) {
	return s.Store.Lookup(ctx, s.P.Key(key))
}

// Client implements Store.
func (s PrivateStore) Client(ctx context.Context, client string) (ClientRecord, bool, error) {
	return s.Store.Client(ctx, s.P.Client(client))
}

// Touch implements Store.
func (s PrivateStore) Touch(key Key, now time.Time) { s.Store.Touch(s.P.Key(key), now) }

// Ping implements Pinger when the store does: privacy hides no fault.
func (s PrivateStore) Ping(ctx context.Context) error {
	if p, ok := s.Store.(Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Meta is a Store that keeps a few named values about itself, such as
// whether its keys are private.
type Meta interface {
	// Meta returns the value of name; found is false when it was never set.
	Meta(ctx context.Context, name string) (value string, found bool, err error)
	// SetMeta sets name to value; an empty value removes it.
	SetMeta(ctx context.Context, name, value string) error
}

// Eraser is a Store that can forget every triplet, client and learned
// sender at once (decision counts, which name nobody, stay). It is meant
// for start-up: the store may keep stale copies in memory, so it must be
// closed and opened again before it decides anything.
type Eraser interface {
	Erase(ctx context.Context) error
}

// MetaPrivacy is the Meta name under which a private store keeps its
// secret's fingerprint.
const MetaPrivacy = "privacy"

// ErrPrivacyMismatch says that a store's keys were made another way
// (plain, or under another secret) than asked.
var ErrPrivacyMismatch = errors.New("privacy mode of the database differs")

// CheckPrivacy tells whether store may be used with p (nil: plain keys),
// and marks a new store as private. empty says whether the store holds no
// triplet and no client; it is asked only when needed.
func CheckPrivacy(ctx context.Context, store Store, p *Privacy, empty func() (bool, error)) error {
	m, ok := store.(Meta)
	if !ok {
		if p != nil {
			return errors.New("this store cannot keep private keys")
		}
		return nil
	}
	mark, found, err := m.Meta(ctx, MetaPrivacy)
	if err != nil {
		return fmt.Errorf("reading the privacy mark: %w", err)
	}
	switch {
	case p == nil && !found:
		return nil
	case p == nil:
		return fmt.Errorf("%w: its keys are private (%s) and --privacy is off", ErrPrivacyMismatch, mark)
	case found && mark == p.Fingerprint():
		return nil
	case found:
		return fmt.Errorf("%w: its keys were made with another secret (%s, this one is %s)", ErrPrivacyMismatch, mark, p.Fingerprint())
	}
	e, err := empty()
	if err != nil {
		return fmt.Errorf("counting what the database holds: %w", err)
	}
	if !e {
		return fmt.Errorf("%w: it holds plain addresses and --privacy is on", ErrPrivacyMismatch)
	}
	if err := m.SetMeta(ctx, MetaPrivacy, p.Fingerprint()); err != nil {
		return fmt.Errorf("marking the database private: %w", err)
	}
	return nil
}
