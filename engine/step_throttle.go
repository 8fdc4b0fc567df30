package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Throttle limits how many new triplets a client subnet may open per
// minute (milter-greylist's ratelimit, sqlgrey's connect throttle): an
// address-harvesting flood would otherwise fill the store with rows that
// never pass. A subnet that goes over the limit gets 421 4.7.0 for every
// mail that reaches greylisting, for the throttle time. Known triplets and
// auto-whitelisted clients pass before it and are never throttled.
//
// The counts are in memory: each MX host counts what it sees.
type Throttle struct {
	Max  int           // new triplets a subnet may open per minute
	For  time.Duration // how long a subnet over the limit is refused
	Text string        // reply text; DefaultThrottleText when empty
	Log  *slog.Logger

	mu        sync.Mutex
	subnets   map[string]*subnetCount
	lastSweep time.Time

	episodes atomic.Int64
	refused  atomic.Int64
}

// DefaultThrottleText is the throttled reply's text.
const DefaultThrottleText = "Too many new senders and recipients from your network, please try again later"

// throttleWindow is the span --max-new-triplets counts over.
const throttleWindow = time.Minute

type subnetCount struct {
	windowStart time.Time // start of the minute being counted
	n           int       // new triplets in it
	until       time.Time // refused until then; zero when not throttled
}

// ThrottleStep refuses the mail of throttled subnets and counts the new
// triplets of the others. It runs just before the greylist step: a mail
// that reaches it is not known, and a triplet it does not find in the
// store is about to be created.
func (g *Greylisting) ThrottleStep(t *Throttle) Step { return throttleStep{g, t} }

type throttleStep struct {
	g *Greylisting
	t *Throttle
}

func (throttleStep) Name() string { return "throttle" }

func (s throttleStep) Run(ctx context.Context, d *Decision) (bool, error) {
	t := s.t
	subnet := s.g.Keyer.Client(d.Req.ClientAddr)
	if until, ok := t.throttled(subnet, d.Now); ok {
		s.refuse(d, until)
		return true, nil
	}
	_, found, err := s.g.Greylist.Store.Lookup(ctx, s.g.key(d))
	if err != nil {
		return false, err
	}
	if found {
		return false, nil // a retry opens no triplet
	}
	if until, ok := t.countNew(subnet, d.Now); ok {
		s.refuse(d, until)
		return true, nil
	}
	return false, nil
}

func (s throttleStep) refuse(d *Decision, until time.Time) {
	s.t.refused.Add(1)
	text := s.t.Text
	if text == "" {
		text = DefaultThrottleText
	}
	wait := until.Sub(d.Now)
	d.Note("throttled_for", int64((wait+time.Second-1)/time.Second))
	d.Verdict = Verdict{Action: Defer, Code: 421, ECode: "4.7.0", Wait: wait, Reason: "throttled", Text: ExpandTemplate(text, d.Req, wait)}
}

// throttled tells whether subnet is refused at now, and until when.
func (t *Throttle) throttled(subnet string, now time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.subnets[subnet]
	if c == nil || !now.Before(c.until) {
		return time.Time{}, false
	}
	return c.until, true
}

// countNew counts a new triplet of subnet at now. When that goes over the
// limit, the subnet is throttled from now on (an episode, logged once) and
// the triplet is refused.
func (t *Throttle) countNew(subnet string, now time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.subnets == nil {
		t.subnets = make(map[string]*subnetCount)
	}
	t.sweep(now)
	c := t.subnets[subnet]
	if c == nil {
		c = &subnetCount{windowStart: now}
		t.subnets[subnet] = c
	}
	if now.Sub(c.windowStart) >= throttleWindow || now.Before(c.windowStart) {
		c.windowStart, c.n = now, 0
	}
	if c.n < t.Max {
		c.n++
		return time.Time{}, false
	}
	c.until = now.Add(t.For)
	c.windowStart, c.n = c.until, 0 // counting starts again when the episode ends
	t.episodes.Add(1)
	if t.Log != nil {
		t.Log.Warn("client subnet throttled: too many new triplets", "subnet", subnet,
			"max_new_triplets", t.Max, "per", throttleWindow.String(), "until", c.until.Format(time.RFC3339))
	}
	return c.until, true
}

// sweep forgets, at most once a minute, the subnets whose minute and
// episode are over, so that the map holds only recent clients.
func (t *Throttle) sweep(now time.Time) {
	if now.Sub(t.lastSweep) < throttleWindow {
		return
	}
	t.lastSweep = now
	for k, c := range t.subnets {
		if now.Sub(c.windowStart) >= throttleWindow && !now.Before(c.until) {
			delete(t.subnets, k)
		}
	}
}

// Episodes is how many times a subnet was throttled.
func (t *Throttle) Episodes() int64 { return t.episodes.Load() }

// Refused is how many mails were refused while throttled.
func (t *Throttle) Refused() int64 { return t.refused.Load() }

// Throttled is how many subnets are throttled at now.
func (t *Throttle) Throttled(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.subnets {
		if now.Before(c.until) {
			n++
		}
	}
	return n
}
