package sqlitestore

import (
	"math/rand/v2"
	"testing"
)

// TestTableAgainstMap runs random puts and deletes on a table and a Go map
// and checks that they always agree, through growth and wrap-around.
func TestTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tb table
	want := map[uint64]memRecord{}
	// Few distinct keys, some colliding on purpose (0 and 1 share a
	// slot key, small values crowd the first slots).
	keyOf := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return uint64(rng.IntN(8))
		case 1:
			return ^uint64(rng.IntN(8)) // homes at the very end: probing wraps
		default:
			return rng.Uint64N(3000)<<50 | rng.Uint64N(4)
		}
	}
	for step := range 30_000 {
		h := keyOf()
		k := tableKey(h)
		switch rng.IntN(3) {
		case 0, 1:
			v := memRecord{first: int64(step), attempts: int32(step % 7)}
			tb.put(h, v, false)
			want[k] = v
		case 2:
			tb.del(h)
			delete(want, k)
		}
		if step%1000 == 0 || step > 29_950 {
			if tb.len() != len(want) {
				t.Fatalf("step %d: %d entries, want %d", step, tb.len(), len(want))
			}
			for k, v := range want {
				if got, ok := tb.get(k); !ok || got != v {
					t.Fatalf("step %d: key %x: %v %+v, want %+v", step, k, ok, got, v)
				}
			}
		}
	}
	// put with ifAbsent keeps what is there.
	tb.put(5, memRecord{first: -1}, false)
	tb.put(5, memRecord{first: -2}, true)
	if v, _ := tb.get(5); v.first != -1 {
		t.Errorf("ifAbsent overwrote: %+v", v)
	}
}

func BenchmarkTableGet(b *testing.B) {
	var tb table
	tb.resize(1_000_000)
	for i := range uint64(1_000_000) {
		tb.put(i*0x9E3779B97F4A7C15, memRecord{first: int64(i)}, false)
	}
	i := uint64(0)
	for b.Loop() {
		i++
		tb.get((i % 1_000_000) * 0x9E3779B97F4A7C15)
	}
}
