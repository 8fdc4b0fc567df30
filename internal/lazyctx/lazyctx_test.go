package lazyctx

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWithDeadline(t *testing.T) {
	t.Run("deadline-is-the-earlier", func(t *testing.T) {
		soon := time.Now().Add(time.Minute)
		parent, cancel := context.WithDeadline(context.Background(), soon)
		defer cancel()
		for _, d := range []time.Time{soon.Add(time.Hour), soon.Add(-time.Second)} {
			c, stop := WithDeadline(parent, d)
			want := d
			if soon.Before(d) {
				want = soon
			}
			if got, ok := c.Deadline(); !ok || !got.Equal(want) {
				t.Errorf("deadline %v: got %v %v, want %v", d, got, ok, want)
			}
			stop()
		}
	})
	t.Run("ends-at-its-deadline", func(t *testing.T) {
		c, stop := WithDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
		defer stop()
		if err := c.Err(); err != nil {
			t.Fatalf("before the deadline: %v", err)
		}
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done not closed at the deadline")
		}
		if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("after the deadline: %v", err)
		}
	})
	t.Run("past-deadline-without-waiting", func(t *testing.T) {
		c, stop := WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
		defer stop()
		if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err: %v", err)
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("Done open after the deadline")
		}
	})
	t.Run("parent-cancel", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
		c, stop := WithDeadline(parent, time.Now().Add(time.Hour))
		defer stop()
		done := c.Done()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Done not closed when the parent was cancelled")
		}
		if err := c.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err: %v", err)
		}
		if c.Value(ctxKey{}) != "v" {
			t.Fatal("values of the parent lost")
		}
	})
	t.Run("children-end-with-it", func(t *testing.T) {
		// A child made before stop sees Done closed and an error, as
		// the context package requires of every parent.
		c, stop := WithDeadline(context.Background(), time.Now().Add(time.Hour))
		child, cancel := context.WithCancel(c)
		defer cancel()
		stop()
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("child not cancelled by stop")
		}
		if !errors.Is(child.Err(), context.Canceled) || !errors.Is(c.Err(), context.Canceled) {
			t.Fatalf("errors after stop: child %v, context %v", child.Err(), c.Err())
		}
	})
	t.Run("stopped-before-done", func(t *testing.T) {
		c, stop := WithDeadline(context.Background(), time.Now().Add(time.Hour))
		stop()
		select {
		case <-c.Done():
		default:
			t.Fatal("Done open after stop")
		}
	})
	t.Run("stopping-starts-no-timer", func(t *testing.T) {
		// A nested bounded context (the SPF check's inside a decision's)
		// that nobody waited on leaves its parent without a timer too.
		parent, stopParent := WithDeadline(context.Background(), time.Now().Add(time.Hour))
		defer stopParent()
		_, stopChild := WithDeadline(parent, time.Now().Add(time.Minute))
		stopChild()
		if parent.(*deadlineContext).timed != nil {
			t.Fatal("stopping the child started the parent's timer")
		}
	})
	t.Run("error-fixed-at-stop", func(t *testing.T) {
		c, stop := WithDeadline(context.Background(), time.Now().Add(10*time.Millisecond))
		stop()
		time.Sleep(20 * time.Millisecond)
		if err := c.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err after stop and past the deadline: %v, want the cancellation", err)
		}
	})
	t.Run("stop-releases-the-timer", func(t *testing.T) {
		c, stop := WithDeadline(context.Background(), time.Now().Add(time.Hour))
		done := c.Done()
		stop()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("stop did not cancel the timer's context")
		}
	})
}

type ctxKey struct{}
