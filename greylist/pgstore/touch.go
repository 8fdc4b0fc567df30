package pgstore

import (
	"context"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// touchQueue bounds the touches waiting to be written; more are dropped
// (they come again with the next mail of their triplet).
const touchQueue = 4096

// touchBatch bounds the touches one statement writes.
const touchBatch = 1000

type touch struct {
	key greylist.Key
	at  int64 // unix milliseconds
}

// touchSQL moves the last-seen times of a batch of triplets, and of their
// clients, forward.
const touchSQL = `WITH v AS (
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS v (client, sender, recipient, seen)
	), t AS (
		UPDATE triplets SET last_seen = v.seen FROM v
		WHERE triplets.client = v.client AND triplets.sender = v.sender AND triplets.recipient = v.recipient
		AND triplets.last_seen < v.seen
	)
	UPDATE clients SET last_seen = c.seen FROM (SELECT client, max(seen) AS seen FROM v GROUP BY client) c
	WHERE clients.client = c.client AND clients.last_seen < c.seen`

// Touch implements greylist.Store: the cached record moves at once, the
// database with the next batch, or never if the queue is full or the
// database down.
func (s *Store) Touch(k greylist.Key, now time.Time) {
	if s.passed != nil {
		if c, ok := s.passed.Peek(k); ok && c.rec.LastSeen.Before(now) {
			c.rec.LastSeen = now
			s.passed.Add(k, c)
		}
	}
	if s.clients != nil {
		if c, ok := s.clients.Peek(k.Client); ok && c.c.LastSeen.Before(now) {
			c.c.LastSeen = now
			s.clients.Add(k.Client, c)
		}
	}
	select {
	case <-s.quit:
	case s.touches <- touch{k, ms(now)}:
	default:
	}
}

// toucher writes queued touches in batches until Close, and those queued
// at Close.
func (s *Store) toucher() {
	defer close(s.done)
	batch := make([]touch, 0, touchBatch)
	for {
		select {
		case t := <-s.touches:
			s.writeTouches(s.queued(append(batch[:0], t)))
		case done := <-s.flush:
			if batch = s.queued(batch[:0]); len(batch) > 0 {
				s.writeTouches(batch)
			}
			close(done)
		case <-s.quit:
			for {
				batch = s.queued(batch[:0])
				if len(batch) == 0 {
					return
				}
				s.writeTouches(batch)
			}
		}
	}
}

// flushTouches writes the touches queued before it was called, or gives
// up when ctx ends.
func (s *Store) flushTouches(ctx context.Context) {
	done := make(chan struct{})
	select {
	case s.flush <- done:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// queued adds to batch what is queued, up to a full batch.
func (s *Store) queued(batch []touch) []touch {
	for len(batch) < touchBatch {
		select {
		case t := <-s.touches:
			batch = append(batch, t)
		default:
			return batch
		}
	}
	return batch
}

func (s *Store) writeTouches(batch []touch) {
	n := len(batch)
	clients, senders, rcpts, seen := make([]string, n), make([]string, n), make([]string, n), make([]int64, n)
	for i, t := range batch {
		clients[i], senders[i], rcpts[i], seen[i] = t.key.Client, t.key.Sender, t.key.Recipient, t.at
	}
	ctx, cancel := s.bound(context.Background())
	defer cancel()
	_, err := s.pool.Exec(ctx, touchSQL, clients, senders, rcpts, seen)
	if s.result(err) != nil {
		s.log.Debug("touches lost", "n", n, "err", err)
	}
}
