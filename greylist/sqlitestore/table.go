package sqlitestore

import "math/bits"

// table is an open-addressing hash table of triplet records keyed by their
// 64-bit hash (linear probing, backward-shift deletion). Unlike a Go map,
// which doubles, it can be sized to what it must hold, so that a million
// triplets take about 40 MB; it holds no pointers for the collector to scan.
type table struct {
	keys []uint64 // 0 marks an empty slot
	vals []memRecord
	n    int
}

// maxLoad is the share of slots a table fills before it grows.
const maxLoad = 0.8

// tableKey keeps 0 free to mark empty slots.
func tableKey(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// home is a key's first slot: the hash scaled to the table's size.
func (t *table) home(k uint64) int {
	hi, _ := bits.Mul64(k, uint64(len(t.keys)))
	return int(hi)
}

func (t *table) next(i int) int {
	if i++; i == len(t.keys) {
		return 0
	}
	return i
}

func (t *table) get(h uint64) (memRecord, bool) {
	if len(t.keys) == 0 {
		return memRecord{}, false
	}
	k := tableKey(h)
	for i := t.home(k); t.keys[i] != 0; i = t.next(i) {
		if t.keys[i] == k {
			return t.vals[i], true
		}
	}
	return memRecord{}, false
}

// put sets the record of h; ifAbsent keeps a record already there.
func (t *table) put(h uint64, v memRecord, ifAbsent bool) {
	if float64(t.n+1) > maxLoad*float64(len(t.keys)) {
		t.resize(t.n + t.n/2 + 16)
	}
	k := tableKey(h)
	i := t.home(k)
	for ; t.keys[i] != 0; i = t.next(i) {
		if t.keys[i] == k {
			if !ifAbsent {
				t.vals[i] = v
			}
			return
		}
	}
	t.keys[i], t.vals[i] = k, v
	t.n++
}

func (t *table) del(h uint64) {
	if len(t.keys) == 0 {
		return
	}
	k := tableKey(h)
	i := t.home(k)
	for ; t.keys[i] != k; i = t.next(i) {
		if t.keys[i] == 0 {
			return
		}
	}
	// Shift back the entries after i that probing would no longer find.
	for j := t.next(i); t.keys[j] != 0; j = t.next(j) {
		home := t.home(t.keys[j])
		if between(home, i, j) {
			continue // still reachable from its home
		}
		t.keys[i], t.vals[i] = t.keys[j], t.vals[j]
		i = j
	}
	t.keys[i], t.vals[i] = 0, memRecord{}
	t.n--
}

// between tells whether slot home lies cyclically in (i, j].
func between(home, i, j int) bool {
	if i <= j {
		return i < home && home <= j
	}
	return i < home || home <= j
}

// resize makes room for want entries and places every entry again.
func (t *table) resize(want int) {
	size := int(float64(want)/maxLoad) + 1
	if size <= len(t.keys) {
		return
	}
	old, oldVals := t.keys, t.vals
	t.keys, t.vals, t.n = make([]uint64, size), make([]memRecord, size), 0
	for i, k := range old {
		if k != 0 {
			t.put(k, oldVals[i], false)
		}
	}
}

func (t *table) len() int { return t.n }
