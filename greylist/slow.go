package greylist

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SlowRetryStore is a Store that keeps what is learned of slow but honest
// retriers, so that it survives restarts and is shared by the MX hosts of
// one database. Its domains and clients come already in their stored form
// (hashed under --privacy).
type SlowRetryStore interface {
	// NoteSlowRetry records that client retried mail of domain after the
	// retry window, at now.
	NoteSlowRetry(ctx context.Context, domain, client string, now time.Time) error
	// NoteSlowPass records that mail of domain passed greylisting from
	// client at now, if client retried late before; others are ignored.
	NoteSlowPass(ctx context.Context, domain, client string, now time.Time) error
	// SlowRetriers returns, for every domain with a late retry on record,
	// how many clients retried late and how many of those then passed.
	SlowRetriers(ctx context.Context) ([]SlowRetrier, error)
	// PurgeSlowRetriers forgets what was last seen before before.
	PurgeSlowRetriers(ctx context.Context, before time.Time) error
}

// SlowRetrier is what is known of one sender domain's late retries.
type SlowRetrier struct {
	Domain      string    // as stored: hashed under --privacy
	LateClients int       // clients that retried its mail after the retry window
	Passed      int       // of those, clients whose mail of it passed greylisting
	LastSeen    time.Time // of its latest late retry or pass
}

// ListSlowRetriers returns what store knows of slow retriers, sorted by
// domain; only domain's when domain is not "". Under privacy (a store made
// by Private) the domains are hashes, which cannot be read back: domain is
// then hashed as the store keeps it, unless it is given as a hash already,
// and hashed is true.
func ListSlowRetriers(ctx context.Context, store Store, domain string) (list []SlowRetrier, hashed bool, err error) {
	raw, p := Unwrap(store)
	s, ok := raw.(SlowRetryStore)
	if !ok {
		return nil, false, fmt.Errorf("this store (%T) keeps no slow retriers", raw)
	}
	if list, err = s.SlowRetriers(ctx); err != nil {
		return nil, false, fmt.Errorf("reading slow retriers: %w", err)
	}
	if domain != "" {
		// Sender addresses, and so their domains, are stored lowercased.
		want := strings.ToLower(strings.TrimSpace(domain))
		if p != nil {
			want = p.stored(labelDomain, want)
		}
		list = slices.DeleteFunc(list, func(r SlowRetrier) bool { return r.Domain != want })
	}
	slices.SortFunc(list, func(a, b SlowRetrier) int { return cmp.Compare(a.Domain, b.Domain) })
	return list, p != nil, nil
}

// SlowRetriers learns sender domains whose mail comes back only after the
// retry window, from one client after another, and still passes in the
// end: an MTA with a long retry schedule, not a bot. Once MinClients
// clients did so, the domain's retries pass up to MaxRetry after their
// first attempt instead of starting greylisting again.
type SlowRetriers struct {
	Store      SlowRetryStore
	Privacy    *Privacy // nil: domains and clients are stored as they are
	MinClients int
	MaxRetry   time.Duration
	// RefreshEvery is how often an attempt first reads again what the
	// store knows (what other MX hosts learned, and purges old evidence);
	// 0: never.
	RefreshEvery time.Duration
	Log          *slog.Logger

	lastRefresh atomic.Int64 // unix nanoseconds of the latest refresh

	mu       sync.RWMutex
	learned  map[string]bool // stored domain → learned
	evidence map[string]bool // stored domain → a late retry is on record
}

// SenderDomain returns the domain of a sender address; "" for the null
// sender and an address without one.
func SenderDomain(sender string) string {
	at := strings.LastIndexByte(sender, '@')
	if at < 0 {
		return ""
	}
	return sender[at+1:]
}

func (s *SlowRetriers) stored(domain, client string) (string, string) {
	if s.Privacy == nil {
		return domain, client
	}
	return s.Privacy.Domain(domain), s.Privacy.Client(client)
}

// Learned tells whether mail of domain gets the longer retry window.
func (s *SlowRetriers) Learned(domain string) bool {
	d, _ := s.stored(domain, "")
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.learned[d]
}

// Attempt is g.Attempt for an attempt of key from client (its subnet or
// address: an SPF identity names the domain, not who sent), learning from
// its outcome. A failure to record what was learned is logged; it never
// fails the decision.
func (s *SlowRetriers) Attempt(ctx context.Context, g *Greylist, rules Rules, key Key, client string, now time.Time) (Result, error) {
	domain := SenderDomain(key.Sender)
	if domain == "" {
		return g.AttemptWith(ctx, key, rules, now)
	}
	s.maybeRefresh(ctx, g.Rules, now)
	d, c := s.stored(domain, client)
	s.mu.RLock()
	learned, evidence := s.learned[d], s.evidence[d]
	s.mu.RUnlock()
	if learned && s.MaxRetry > rules.RetryWindow {
		rules.RetryWindow = s.MaxRetry
	}
	res, err := g.AttemptWith(ctx, key, rules, now)
	if err != nil || learned {
		return res, err
	}
	switch {
	case res.Late > 0 && res.Late <= s.MaxRetry:
		if err := s.Store.NoteSlowRetry(ctx, d, c, now); err != nil {
			s.logError("recording a late retry", err)
			break
		}
		s.mu.Lock()
		if s.evidence == nil {
			s.evidence = make(map[string]bool)
		}
		s.evidence[d] = true
		s.mu.Unlock()
	case res.Outcome == Passed && evidence:
		if err := s.Store.NoteSlowPass(ctx, d, c, now); err != nil {
			s.logError("recording a pass", err)
			break
		}
		if err := s.Refresh(ctx, g.Rules, now); err != nil {
			s.logError("reading slow retriers", err)
			break
		}
		if s.Learned(domain) && s.Log != nil {
			s.Log.Info("slow retrier learned: its retries pass up to --max-slow-retry after the first attempt", "domain", domain, "max_slow_retry", s.MaxRetry.String())
		}
	}
	return res, nil
}

func (s *SlowRetriers) logError(what string, err error) {
	if s.Log != nil {
		s.Log.Error("slow retriers: "+what, "err", err)
	}
}

// maybeRefresh refreshes when RefreshEvery has passed since the last
// time; of concurrent attempts only one does.
func (s *SlowRetriers) maybeRefresh(ctx context.Context, rules Rules, now time.Time) {
	last := s.lastRefresh.Load()
	if s.RefreshEvery <= 0 || now.UnixNano()-last < int64(s.RefreshEvery) || !s.lastRefresh.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	if err := s.Refresh(ctx, rules, now); err != nil {
		s.logError("refresh", err)
	}
}

// Refresh forgets what was last seen more than rules.MaxAge ago and reads
// again what the store knows, with what other hosts learned.
func (s *SlowRetriers) Refresh(ctx context.Context, rules Rules, now time.Time) error {
	if rules.MaxAge > 0 {
		if err := s.Store.PurgeSlowRetriers(ctx, now.Add(-rules.MaxAge)); err != nil {
			return err
		}
	}
	list, err := s.Store.SlowRetriers(ctx)
	if err != nil {
		return err
	}
	learned, evidence := make(map[string]bool), make(map[string]bool)
	for _, r := range list {
		evidence[r.Domain] = true
		if r.Passed >= s.MinClients {
			learned[r.Domain] = true
		}
	}
	s.mu.Lock()
	s.learned, s.evidence = learned, evidence
	s.mu.Unlock()
	s.lastRefresh.Store(now.UnixNano())
	return nil
}
