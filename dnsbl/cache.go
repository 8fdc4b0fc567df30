package dnsbl

import (
	"container/list"
	"sync"
	"time"
)

type cacheKey struct {
	name  string // lower case, fully qualified
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	answer  *Answer
	expires time.Time
}

// cache is a size-bounded LRU map of answers with expiry times.
type cache struct {
	mu  sync.Mutex
	max int
	lru *list.List // front: most recently used
	m   map[cacheKey]*list.Element
}

func newCache(size int) *cache {
	return &cache{max: size, lru: list.New(), m: make(map[cacheKey]*list.Element, min(size, 1024))}
}

func (c *cache) get(k cacheKey, now time.Time) (*Answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.m, k)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e.answer, true
}

func (c *cache) put(k cacheKey, a *Answer, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.answer, e.expires = a, expires
		c.lru.MoveToFront(el)
		return
	}
	c.m[k] = c.lru.PushFront(&cacheEntry{key: k, answer: a, expires: expires})
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
