package greylist

import (
	"context"
	"database/sql"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// index is the SQLite store's copy in memory of every triplet and client,
// so that decisions read no database: the database is only written (and
// read once, at start, to fill the index). Triplets are keyed by a 64-bit
// hash with a per-process random seed: about 40 bytes a triplet, and a
// collision between two of a million triplets has odds of 1 in 30 million
// that nobody outside can steer.
//
// The index fills in the background after the store opens. Until it is
// complete a key it does not hold is looked up in the database, and what
// was written or deleted since the start wins over what the fill reads.
type index struct {
	seed    maphash.Seed
	shards  [indexShards]indexShard
	clients struct {
		sync.RWMutex
		m map[string]ClientRecord
	}
	ready atomic.Bool

	// fillMu guards the tombstones of keys deleted while filling.
	fillMu     sync.Mutex
	tombstones map[uint64]struct{}
	clientTomb map[string]struct{}
}

const indexShards = 64

type indexShard struct {
	sync.RWMutex
	m map[uint64]memRecord
}

// memRecord is a Record in 28 bytes: unix milliseconds and a count.
type memRecord struct {
	first, last, passed int64
	attempts            int32
}

func toMem(r Record) memRecord {
	return memRecord{first: ms(r.FirstSeen), last: ms(r.LastSeen), passed: ms(r.PassedAt), attempts: int32(r.Attempts)}
}

func (m memRecord) record() Record {
	return Record{FirstSeen: fromMS(m.first), LastSeen: fromMS(m.last), PassedAt: fromMS(m.passed), Attempts: int(m.attempts)}
}

func newIndex() *index {
	ix := &index{seed: maphash.MakeSeed(), tombstones: map[uint64]struct{}{}, clientTomb: map[string]struct{}{}}
	for i := range ix.shards {
		ix.shards[i].m = make(map[uint64]memRecord)
	}
	ix.clients.m = make(map[string]ClientRecord)
	return ix
}

func (ix *index) hash(k Key) uint64 {
	var h maphash.Hash
	h.SetSeed(ix.seed)
	h.WriteString(k.Client)
	h.WriteByte(0)
	h.WriteString(k.Sender)
	h.WriteByte(0)
	h.WriteString(k.Recipient)
	return h.Sum64()
}

func (ix *index) shard(h uint64) *indexShard { return &ix.shards[h%indexShards] }

// triplet returns the record of hash h; sure is false when the index is
// not complete yet and does not hold h: then only the database knows.
func (ix *index) triplet(h uint64) (rec memRecord, found, sure bool) {
	sh := ix.shard(h)
	sh.RLock()
	rec, found = sh.m[h]
	sh.RUnlock()
	return rec, found, found || ix.ready.Load()
}

func (ix *index) client(c string) (rec ClientRecord, found, sure bool) {
	ix.clients.RLock()
	rec, found = ix.clients.m[c]
	ix.clients.RUnlock()
	return rec, found, found || ix.ready.Load()
}

// change is a pending change to the index, applied once its transaction
// committed.
type change struct {
	h       uint64
	client  string // set for a client change
	rec     memRecord
	crec    ClientRecord
	deleted bool
}

func (ix *index) apply(changes []change) {
	if !ix.ready.Load() {
		// While filling, a deletion leaves a tombstone so that the fill
		// does not bring back what it read before; fillMu makes the
		// tombstone and the deletion one step for the fill.
		ix.fillMu.Lock()
		defer ix.fillMu.Unlock()
		if !ix.ready.Load() {
			for _, c := range changes {
				switch {
				case c.deleted && c.client != "":
					ix.clientTomb[c.client] = struct{}{}
				case c.deleted:
					ix.tombstones[c.h] = struct{}{}
				}
			}
		}
	}
	for _, c := range changes {
		if c.client != "" {
			ix.clients.Lock()
			if c.deleted {
				delete(ix.clients.m, c.client)
			} else {
				ix.clients.m[c.client] = c.crec
			}
			ix.clients.Unlock()
			continue
		}
		sh := ix.shard(c.h)
		sh.Lock()
		if c.deleted {
			delete(sh.m, c.h)
		} else {
			sh.m[c.h] = c.rec
		}
		sh.Unlock()
	}
}

// fill reads every triplet and client from db, keeping what was written
// or deleted since the store opened, then marks the index complete.
func (ix *index) fill(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT client, sender, recipient, first_seen, last_seen, passed_at, attempts FROM triplets`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var k Key
	var r memRecord
	for rows.Next() {
		if err := rows.Scan(&k.Client, &k.Sender, &k.Recipient, &r.first, &r.last, &r.passed, &r.attempts); err != nil {
			return err
		}
		h := ix.hash(k)
		ix.fillMu.Lock()
		if _, gone := ix.tombstones[h]; !gone {
			sh := ix.shard(h)
			sh.Lock()
			if _, ok := sh.m[h]; !ok {
				sh.m[h] = r
			}
			sh.Unlock()
		}
		ix.fillMu.Unlock()
	}
	if err := rows.Err(); err != nil {
		return err
	}
	crows, err := db.QueryContext(ctx, `SELECT client, passes, last_seen FROM clients`)
	if err != nil {
		return err
	}
	defer crows.Close()
	for crows.Next() {
		var c string
		var passes int
		var last int64
		if err := crows.Scan(&c, &passes, &last); err != nil {
			return err
		}
		ix.fillMu.Lock()
		if _, gone := ix.clientTomb[c]; !gone {
			ix.clients.Lock()
			if _, ok := ix.clients.m[c]; !ok {
				ix.clients.m[c] = ClientRecord{Passes: passes, LastSeen: fromMS(last)}
			}
			ix.clients.Unlock()
		}
		ix.fillMu.Unlock()
	}
	if err := crows.Err(); err != nil {
		return err
	}
	ix.fillMu.Lock()
	ix.ready.Store(true)
	ix.tombstones, ix.clientTomb = nil, nil
	ix.fillMu.Unlock()
	return nil
}
