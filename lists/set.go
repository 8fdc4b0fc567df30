package lists

import (
	"bytes"
	_ "embed"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// defaultWhitelistClients is the shipped client whitelist: large providers
// that retry from address pools or never retry.
//
//go:embed default/whitelist_clients
var defaultWhitelistClients []byte

// DefaultWhitelistName is the file name the shipped client whitelist has in
// errors and match sources.
const DefaultWhitelistName = "default:whitelist_clients"

// Config names the list files of a Set. Every field may name several files;
// the zero Config is a Set with no lists.
type Config struct {
	WhitelistClients    []string
	WhitelistRecipients []string
	WhitelistSenders    []string
	BlacklistClients    []string
	BlacklistSenders    []string
	// DefaultWhitelist reads the shipped client whitelist before
	// WhitelistClients.
	DefaultWhitelist bool
}

// Verdict is what the lists say about one recipient of a transaction.
type Verdict int

const (
	// Unlisted: no list names the client, sender or recipient.
	Unlisted Verdict = iota
	// Whitelisted: pass without greylisting.
	Whitelisted
	// Blacklisted: reject.
	Blacklisted
)

func (v Verdict) String() string {
	switch v {
	case Whitelisted:
		return "whitelisted"
	case Blacklisted:
		return "blacklisted"
	}
	return "unlisted"
}

// Result is the answer of Set.Check.
type Result struct {
	Verdict Verdict
	// Source is the file and line of the rule that matched.
	Source Source
	// Subject is what matched: "client", "sender" or "recipient".
	Subject string
}

// compiled is every list of a Set at one moment.
type compiled struct {
	wlClients, wlRecipients, wlSenders *List
	blClients, blSenders               *List
}

// Set holds every configured list. Check may be called from any number of
// goroutines, also while Reload runs: it sees either the old lists or the
// new ones, never a mix.
type Set struct {
	cfg    Config
	reload sync.Mutex // one Reload at a time
	cur    atomic.Pointer[compiled]
}

// Load reads every list cfg names. The error of a bad line reads
// "FILE:LINE: what is wrong" (a *ParseError).
func Load(cfg Config) (*Set, error) {
	s := &Set{cfg: cfg}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads every list again. Only when all files parse do the new
// lists replace the old; on error the old lists stay in force.
func (s *Set) Reload() error {
	s.reload.Lock()
	defer s.reload.Unlock()
	c, err := compile(s.cfg)
	if err != nil {
		return err
	}
	s.cur.Store(c)
	return nil
}

func compile(cfg Config) (*compiled, error) {
	var c compiled
	b := newBuilder(Clients)
	if cfg.DefaultWhitelist {
		if err := b.read(DefaultWhitelistName, bytes.NewReader(defaultWhitelistClients)); err != nil {
			return nil, err
		}
	}
	for _, p := range cfg.WhitelistClients {
		if err := b.readFile(p); err != nil {
			return nil, err
		}
	}
	c.wlClients = b.build()
	for _, f := range []struct {
		dst   **List
		kind  Kind
		paths []string
	}{
		{&c.wlRecipients, Addresses, cfg.WhitelistRecipients},
		{&c.wlSenders, Addresses, cfg.WhitelistSenders},
		{&c.blClients, Clients, cfg.BlacklistClients},
		{&c.blSenders, Addresses, cfg.BlacklistSenders},
	} {
		l, err := LoadFiles(f.kind, f.paths...)
		if err != nil {
			return nil, err
		}
		*f.dst = l
	}
	if c.wlRecipients.null > 0 {
		// A rule that could never match is refused, not loaded.
		src := c.wlRecipients.source(c.wlRecipients.null - 1)
		return nil, &ParseError{File: src.File, Line: src.Line, Err: errors.New("<> is the null sender: a recipient is never empty (put it in a sender list)")}
	}
	return &c, nil
}

// Rules returns the number of rules in force, over all lists.
func (s *Set) Rules() int {
	c := s.cur.Load()
	return c.wlClients.Len() + c.wlRecipients.Len() + c.wlSenders.Len() + c.blClients.Len() + c.blSenders.Len()
}

// Check looks one recipient of a transaction up in every list. A blacklist
// match wins over a whitelist match; clients are looked up before senders,
// senders before recipients. bareSender is the address the sender stands
// for without a BATV tag or SRS forwarding (greylist.UnwrapSender), or ""
// when it is the sender itself: sender lists match either form, so that
// neither a tag escapes a blacklist nor a whitelisted sender using one is
// greylisted.
func (s *Set) Check(addr netip.Addr, clientName, sender, bareSender, recipient string) Result {
	c := s.cur.Load()
	if src, ok := c.blClients.MatchClient(addr, clientName); ok {
		return Result{Blacklisted, src, "client"}
	}
	if src, ok := matchSender(c.blSenders, sender, bareSender); ok {
		return Result{Blacklisted, src, "sender"}
	}
	if src, ok := c.wlClients.MatchClient(addr, clientName); ok {
		return Result{Whitelisted, src, "client"}
	}
	if src, ok := matchSender(c.wlSenders, sender, bareSender); ok {
		return Result{Whitelisted, src, "sender"}
	}
	if src, ok := c.wlRecipients.MatchAddress(recipient); ok {
		return Result{Whitelisted, src, "recipient"}
	}
	return Result{}
}

// matchSender matches the sender as given, then the address it stands for.
func matchSender(l *List, sender, bareSender string) (Source, bool) {
	if src, ok := l.MatchAddress(sender); ok {
		return src, true
	}
	if bareSender == "" || strings.EqualFold(bareSender, sender) {
		return Source{}, false
	}
	return l.MatchAddress(bareSender)
}
