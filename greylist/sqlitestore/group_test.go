package sqlitestore

import (
	"testing"
	"time"
)

// A long window, so that waiting and not waiting are told apart on a
// loaded machine.
const testWindow = 5 * time.Second

func gatherStore() *Store {
	return &Store{ops: make(chan *op, 4*maxBatch), touch: make(chan touchOp, 1)}
}

func TestGatherAloneDoesNotWait(t *testing.T) {
	s := gatherStore()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	start := time.Now()
	batch := s.gather([]*op{{}}, 1, wait, testWindow)
	if took := time.Since(start); took > testWindow/5 {
		t.Fatalf("a lone operation waited %v", took)
	}
	if len(batch) != 1 {
		t.Fatalf("batch of %d, want 1", len(batch))
	}
}

func TestGatherTakesWhatIsQueuedWithoutWaiting(t *testing.T) {
	s := gatherStore()
	for i := 0; i < 3; i++ {
		s.ops <- &op{}
	}
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	if batch := s.gather([]*op{{}}, 1, wait, testWindow); len(batch) != 4 {
		t.Fatalf("batch of %d, want the 4 queued", len(batch))
	}
}

func TestGatherWhenBusyWaitsForTheDecisionsBehind(t *testing.T) {
	s := gatherStore()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	go func() {
		for i := 1; i < groupEnough; i++ {
			time.Sleep(time.Millisecond)
			s.ops <- &op{}
		}
	}()
	start := time.Now()
	// The previous batch was large: wait for as many.
	batch := s.gather([]*op{{}}, 10*groupEnough, wait, testWindow)
	if len(batch) != groupEnough {
		t.Fatalf("batch of %d, want %d: operations that came within the window", len(batch), groupEnough)
	}
	if took := time.Since(start); took >= testWindow {
		t.Fatalf("a full batch still waited the whole window (%v)", took)
	}
}

func TestGatherWaitsOnlyForAsManyAsLastTime(t *testing.T) {
	s := gatherStore()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	go func() {
		for i := 1; i < 8; i++ {
			time.Sleep(time.Millisecond)
			s.ops <- &op{}
		}
	}()
	start := time.Now()
	batch := s.gather([]*op{{}}, 8, wait, testWindow)
	if took := time.Since(start); len(batch) != 8 || took >= testWindow {
		t.Fatalf("batch of %d after %v, want 8 without waiting out the window", len(batch), took)
	}
}

func TestGatherWhenBusyWaitsNoLongerThanTheWindow(t *testing.T) {
	s := gatherStore()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	start := time.Now()
	batch := s.gather([]*op{{}}, 8, wait, 50*time.Millisecond)
	took := time.Since(start)
	if len(batch) != 1 || took < 50*time.Millisecond || took > 3*time.Second {
		t.Fatalf("batch of %d after %v, want 1 after the 50ms window", len(batch), took)
	}
}
