// Package lazyctx gives contexts with a deadline that cost no timer until
// something waits on them.
package lazyctx

import (
	"context"
	"sync"
	"time"
)

// deadlineContext is bounded like one of context.WithDeadline, but starts
// no timer until something waits on Done. Most decisions never do (their
// DNS answers are cached and the store's queue has room), and timers made
// per decision showed in profiles under load: every one takes the timer
// heap's lock twice.
type deadlineContext struct {
	context.Context
	deadline time.Time

	mu      sync.Mutex
	timed   context.Context // made by the first Done before stop
	cancel  context.CancelFunc
	stopErr error // set by stop when no Done came first
}

// closed is the Done channel of a context stopped before anyone waited.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// WithDeadline is context.WithDeadline without the timer until one is
// needed; cancel must be called when the work is done, as with the
// original.
func WithDeadline(parent context.Context, d time.Time) (context.Context, context.CancelFunc) {
	c := &deadlineContext{Context: parent, deadline: d}
	return c, c.stop
}

// WithTimeout is WithDeadline(parent, time.Now().Add(timeout)).
func WithTimeout(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return WithDeadline(parent, time.Now().Add(timeout))
}

func (c *deadlineContext) Deadline() (time.Time, bool) {
	if pd, ok := c.Context.Deadline(); ok && pd.Before(c.deadline) {
		return pd, true
	}
	return c.deadline, true
}

func (c *deadlineContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timed == nil {
		if c.stopErr != nil {
			return closed
		}
		c.timed, c.cancel = context.WithDeadline(c.Context, c.deadline)
	}
	return c.timed.Done()
}

// Err agrees with Done: once Done exists it is the timed context's error,
// before that the one Done would have at once.
func (c *deadlineContext) Err() error {
	c.mu.Lock()
	timed, stopErr := c.timed, c.stopErr
	c.mu.Unlock()
	switch {
	case timed != nil:
		return timed.Err()
	case stopErr != nil:
		return stopErr
	}
	return c.untimedErr()
}

func (c *deadlineContext) untimedErr() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// stop ends the context as a cancel function does: Done is closed (now or
// when first asked for) and a timer, if one was started, released. It
// starts nothing itself: a decision that never waited costs no timer and
// no registration with its parent.
func (c *deadlineContext) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
		return
	}
	if c.stopErr == nil {
		c.stopErr = c.untimedErr()
		if c.stopErr == nil {
			c.stopErr = context.Canceled
		}
	}
}
