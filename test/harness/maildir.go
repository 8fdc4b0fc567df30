package harness

import (
	"bytes"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Message is a message delivered into the instance's Maildir.
type Message struct {
	Path   string
	Header mail.Header
	Body   []byte
}

// Messages returns the messages delivered so far to rcpt (as named in their
// Delivered-To header), oldest first.
func (p *PostfixInstance) Messages(t testing.TB, rcpt string) []*Message {
	t.Helper()
	msgs, err := readMaildir(p.Maildir)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	var mine []*Message
	for _, m := range msgs {
		if strings.EqualFold(m.Header.Get("Delivered-To"), rcpt) {
			mine = append(mine, m)
		}
	}
	return mine
}

// WaitMessage waits for the message with the given Message-ID (brackets
// included, as in [Result.MessageID]) to be delivered to rcpt, and fails the
// test if it does not arrive within 20 seconds: delivery happens after the
// SMTP transaction, in Postfix's queue manager and virtual(8).
func (p *PostfixInstance) WaitMessage(t testing.TB, rcpt, messageID string) *Message {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, m := range p.Messages(t, rcpt) {
			if m.Header.Get("Message-ID") == messageID {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: message %s not delivered to %s within 20s\nmail log:\n%s", messageID, rcpt, p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readMaildir reads the messages in a Maildir's new/ and cur/, oldest
// first; a Maildir that does not exist yet holds none.
func readMaildir(dir string) ([]*Message, error) {
	type entry struct {
		path string
		mod  time.Time
	}
	var entries []entry
	for _, sub := range []string{"new", "cur"} {
		des, err := os.ReadDir(filepath.Join(dir, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("maildir %s: %w", dir, err)
		}
		for _, de := range des {
			info, err := de.Info()
			if err != nil {
				return nil, fmt.Errorf("maildir %s: %w", dir, err)
			}
			entries = append(entries, entry{filepath.Join(dir, sub, de.Name()), info.ModTime()})
		}
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].mod.Before(entries[j].mod) })
	var msgs []*Message
	for _, e := range entries {
		m, err := ReadMessage(e.path)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// ReadMessage reads and parses one message file.
func ReadMessage(path string) (*Message, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", path, err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", path, err)
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", path, err)
	}
	return &Message{Path: path, Header: m.Header, Body: body}, nil
}
