package sqlitestore

import "time"

// Group commit that grows with load. A batch takes what is queued when
// the writer gets to it; under load the writer then waits a little for the
// decisions right behind, until the batch is as large as the previous one
// (the load it saw last), so that one transaction (and its WAL writes)
// serves more of them. Operations found queued beyond that make the next
// batch larger still. A writer whose last batch was alone (concurrency 1)
// does not wait: a lone decision is committed at once.
const (
	// groupWait is the longest a batch is held open for more operations.
	groupWait = 200 * time.Microsecond
	// groupEnough bounds the size a batch waits for.
	groupEnough = 32
)

// gather adds what is queued to batch, then waits up to window (groupWait)
// for more until it holds target operations (at most groupEnough).
func (s *Store) gather(batch []*op, target int, wait *time.Timer, window time.Duration) []*op {
	for len(batch) < maxBatch {
		select {
		case o := <-s.ops:
			batch = append(batch, o)
			continue
		case t := <-s.touch:
			batch = append(batch, s.touchOp(t))
			continue
		default:
		}
		break
	}
	target = min(target, groupEnough)
	if len(batch) >= target {
		return batch
	}
	wait.Reset(window)
	defer wait.Stop()
	for len(batch) < target {
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		case t := <-s.touch:
			batch = append(batch, s.touchOp(t))
		case <-wait.C:
			return batch
		}
	}
	return batch
}
