package sqlitestore

import (
	"context"
	"database/sql"
	"hash/maphash"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/greymilter/greymilter/greylist"
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
		m map[string]greylist.ClientRecord
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
	t table
}

// memRecord is a Record in 24 bytes. The first-seen time keeps its
// milliseconds (delays are measured from it); the last-seen and passed
// times are kept to the second (they count in hours and days).
type memRecord struct {
	first        int64  // unix milliseconds
	last, passed uint32 // unix seconds; passed is 0 until the triplet passed
	attempts     int32
}

func toMem(r greylist.Record) memRecord {
	return memRecord{first: ms(r.FirstSeen), last: seconds(r.LastSeen), passed: seconds(r.PassedAt), attempts: int32(r.Attempts)}
}

// fromDB builds a memRecord from the database's milliseconds.
func fromDB(first, last, passed int64, attempts int32) memRecord {
	return toMem(greylist.Record{FirstSeen: fromMS(first), LastSeen: fromMS(last), PassedAt: fromMS(passed), Attempts: int(attempts)})
}

func (m memRecord) record() greylist.Record {
	r := greylist.Record{FirstSeen: fromMS(m.first), Attempts: int(m.attempts)}
	if m.last != 0 {
		r.LastSeen = time.Unix(int64(m.last), 0)
	}
	if m.passed != 0 {
		r.PassedAt = time.Unix(int64(m.passed), 0)
	}
	return r
}

// seconds is t in unix seconds, rounded up so that a time never reads as
// earlier than it was; 0 stays the zero time.
func seconds(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	return uint32((t.UnixMilli() + 999) / 1000)
}

func newIndex() *index {
	ix := &index{seed: maphash.MakeSeed(), tombstones: map[uint64]struct{}{}, clientTomb: map[string]struct{}{}}
	ix.clients.m = make(map[string]greylist.ClientRecord)
	return ix
}

func (ix *index) hash(k greylist.Key) uint64 {
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
	rec, found = sh.t.get(h)
	sh.RUnlock()
	return rec, found, found || ix.ready.Load()
}

func (ix *index) client(c string) (rec greylist.ClientRecord, found, sure bool) {
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
	crec    greylist.ClientRecord
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
			sh.t.del(c.h)
		} else {
			sh.t.put(c.h, c.rec, false)
		}
		sh.Unlock()
	}
}

// fill reads every triplet and client from db, keeping what was written
// or deleted since the store opened, then marks the index complete.
func (ix *index) fill(ctx context.Context, db *sql.DB) error {
	// Tables sized once for what is there grow no further until mail
	// brings more.
	var count int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM triplets`).Scan(&count); err != nil {
		return err
	}
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.Lock()
		sh.t.resize(count/indexShards + count/(8*indexShards) + 8)
		sh.Unlock()
	}
	rows, err := db.QueryContext(ctx, `SELECT client, sender, recipient, first_seen, last_seen, passed_at, attempts FROM triplets`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var k greylist.Key
	var first, last, passed int64
	var attempts int32
	for rows.Next() {
		if err := rows.Scan(&k.Client, &k.Sender, &k.Recipient, &first, &last, &passed, &attempts); err != nil {
			return err
		}
		r := fromDB(first, last, passed, attempts)
		h := ix.hash(k)
		ix.fillMu.Lock()
		if _, gone := ix.tombstones[h]; !gone {
			sh := ix.shard(h)
			sh.Lock()
			sh.t.put(h, r, true)
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
				ix.clients.m[c] = greylist.ClientRecord{Passes: passes, LastSeen: fromMS(last)}
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
	// The fill read every row through fresh strings: give that memory
	// back now rather than carry it as heap headroom.
	debug.FreeOSMemory()
	return nil
}

// Ready implements greylist.Readier: whether the in-memory index is
// complete; until it is, decisions of keys it lacks read the database.
func (s *Store) Ready() bool { return s.ix.ready.Load() }
