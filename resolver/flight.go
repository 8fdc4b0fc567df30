package resolver

import (
	"context"
	"sync"
	"time"
)

// flightGroup merges concurrent identical lookups into one upstream query
// (what golang.org/x/sync/singleflight does, plus cancellation: the query
// is abandoned when every caller has given up).
type flightGroup struct {
	mu sync.Mutex
	m  map[cacheKey]*flight
}

type flight struct {
	done    chan struct{}
	answer  *Answer
	err     error
	waiters int
	cancel  context.CancelFunc
}

// do runs fn once for concurrent callers with the same key, in a context of
// its own bounded by budget, and returns its result to every caller still
// waiting. A caller whose ctx ends stops waiting at once.
func (g *flightGroup) do(ctx context.Context, k cacheKey, budget time.Duration, fn func(context.Context) (*Answer, error)) (*Answer, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[cacheKey]*flight{}
	}
	f, ok := g.m[k]
	if !ok {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
		f = &flight{done: make(chan struct{}), cancel: cancel}
		g.m[k] = f
		go func() {
			f.answer, f.err = fn(fctx)
			cancel()
			g.forget(k, f)
			close(f.done)
		}()
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		return f.answer, f.err
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
			// A caller arriving now must not join a cancelled query.
			if g.m[k] == f {
				delete(g.m, k)
			}
		}
		g.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (g *flightGroup) forget(k cacheKey, f *flight) {
	g.mu.Lock()
	if g.m[k] == f {
		delete(g.m, k)
	}
	g.mu.Unlock()
}
