package greylist

import (
	"sync"
	"time"
)

// passCache remembers recently seen good triplets and clients so that the
// common case, mail from a known sender, needs no database read. It only
// holds positive facts that stay true until their entry is past max-age,
// so it never needs invalidating; when full it forgets an arbitrary entry.
type passCache struct {
	mu       sync.Mutex
	max      int
	triplets map[Key]time.Time    // passed triplet -> last seen
	clients  map[string]time.Time // auto-whitelisted client -> last seen
}

func newPassCache(max int) *passCache {
	return &passCache{max: max, triplets: make(map[Key]time.Time), clients: make(map[string]time.Time)}
}

// triplet returns when a passed triplet was last seen.
func (c *passCache) triplet(k Key) (time.Time, bool) {
	c.mu.Lock()
	t, ok := c.triplets[k]
	c.mu.Unlock()
	return t, ok
}

func (c *passCache) client(client string) (time.Time, bool) {
	c.mu.Lock()
	t, ok := c.clients[client]
	c.mu.Unlock()
	return t, ok
}

func (c *passCache) putTriplet(k Key, seen time.Time) {
	c.mu.Lock()
	putBounded(c.triplets, k, seen, c.max)
	c.mu.Unlock()
}

func (c *passCache) putClient(client string, seen time.Time) {
	c.mu.Lock()
	putBounded(c.clients, client, seen, c.max)
	c.mu.Unlock()
}

func putBounded[K comparable](m map[K]time.Time, k K, v time.Time, max int) {
	if _, ok := m[k]; !ok && len(m) >= max {
		for old := range m { // map order is random: random eviction
			delete(m, old)
			break
		}
	}
	m[k] = v
}
