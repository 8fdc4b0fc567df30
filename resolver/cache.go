package resolver

import (
	"container/list"
	"sync"
	"time"
)

type cacheKey struct {
	name  string // lower case, fully qualified
	qtype uint16
}

// outcome is what a lookup gave: an answer, or with a nil answer the error
// of a failure.
type outcome struct {
	answer *Answer
	err    error
}

type cacheEntry struct {
	key cacheKey
	outcome
	expires time.Time
}

// cache is a size-bounded LRU map of answers, and of recent failures, with
// expiry times.
type cache struct {
	mu  sync.Mutex
	max int
	lru *list.List // front: most recently used
	m   map[cacheKey]*list.Element
}

func newCache(size int) *cache {
	return &cache{max: size, lru: list.New(), m: make(map[cacheKey]*list.Element, min(size, 1024))}
}

// get returns k's answer, or its remembered failure.
func (c *cache) get(k cacheKey, now time.Time) (outcome, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return outcome{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.m, k)
		return outcome{}, false
	}
	c.lru.MoveToFront(el)
	return e.outcome, true
}

// put keeps an answer or a failure until expires.
func (c *cache) put(k cacheKey, o outcome, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.outcome, e.expires = o, expires
		c.lru.MoveToFront(el)
		return
	}
	c.m[k] = c.lru.PushFront(&cacheEntry{key: k, outcome: o, expires: expires})
	for c.lru.Len() > c.max {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.m, last.Value.(*cacheEntry).key)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
