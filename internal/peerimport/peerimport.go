// Package peerimport reads the greylists of postgrey and sqlgrey into
// greymilter's form, so that switching tools does not greylist every
// correspondent again.
package peerimport

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// Options say how the other tool ran and how greymilter keys triplets.
type Options struct {
	// Keyer is greymilter's: imported clients are keyed as greymilter
	// will key the same clients' next mail.
	Keyer greylist.Keyer
	// Delay is the other tool's delay: postgrey stores no pass, only the
	// first and last times, and a triplet passed when they are this far
	// apart.
	Delay time.Duration
	// AutoWhitelist is greymilter's --auto-whitelist-clients: a client
	// that sqlgrey auto-whitelisted for a domain gets that many passes.
	AutoWhitelist int
}

// Report says what an import brought over and what it left.
type Report struct {
	Triplets, Passed, Clients int
	Skipped                   map[string]int // reason -> count
}

func (r *Report) skip(reason string) {
	if r.Skipped == nil {
		r.Skipped = map[string]int{}
	}
	r.Skipped[reason]++
}

// String is the report in one line.
func (r Report) String() string {
	s := fmt.Sprintf("%d triplets (%d passed), %d clients", r.Triplets, r.Passed, r.Clients)
	for reason, n := range r.Skipped {
		s += fmt.Sprintf("; skipped %d: %s", n, reason)
	}
	return s
}

// merger keeps one record per key, the one seen last.
type merger struct {
	triplets map[greylist.Key]greylist.Record
	clients  map[string]greylist.ClientRecord
}

func newMerger() *merger {
	return &merger{triplets: map[greylist.Key]greylist.Record{}, clients: map[string]greylist.ClientRecord{}}
}

func (m *merger) triplet(k greylist.Key, r greylist.Record) {
	if old, ok := m.triplets[k]; ok && old.LastSeen.After(r.LastSeen) {
		return
	}
	m.triplets[k] = r
}

// addPasses adds passes to a client, keeping its latest last-seen time.
func (m *merger) addPasses(client string, passes int, last time.Time) {
	c := m.clients[client]
	c.Passes += passes
	if last.After(c.LastSeen) {
		c.LastSeen = last
	}
	m.clients[client] = c
}

func (m *merger) result(rep *Report) *greylist.Imported {
	im := &greylist.Imported{}
	for k, r := range m.triplets {
		im.Triplets = append(im.Triplets, greylist.Triplet{Key: k, Record: r})
		if r.Passed() {
			rep.Passed++
		}
	}
	for c, r := range m.clients {
		im.Clients = append(im.Clients, greylist.ClientEntry{Client: c, ClientRecord: r})
	}
	rep.Triplets, rep.Clients = len(im.Triplets), len(im.Clients)
	return im
}

// Postgrey reads postgrey's database: path is its --dbdir (or the
// postgrey.db file in it). Keys are "CLIENT_NET/SENDER/RECIPIENT" and
// values "FIRST,LAST[,HOST]" in unix seconds; the auto-whitelist
// (postgrey_clients.db, when postgrey ran with it) maps client addresses
// to "COUNT,LAST". postgrey's --privacy keys are hashes and cannot be
// brought over. The files are read with db_dump (Debian's db-util), which
// understands every Berkeley DB version postgrey may have written.
func Postgrey(ctx context.Context, path string, o Options) (*greylist.Imported, Report, error) {
	var rep Report
	dir := path
	if fi, err := os.Stat(path); err != nil {
		return nil, rep, err
	} else if !fi.IsDir() {
		dir = filepath.Dir(path)
	}
	m := newMerger()
	err := dbDump(ctx, dir, "postgrey.db", func(key, value string) {
		k, ok := postgreyKey(key, o.Keyer)
		if !ok {
			rep.skip("keys not CLIENT/SENDER/RECIPIENT (postgrey --privacy hashes them)")
			return
		}
		f := strings.Split(value, ",")
		if len(f) < 2 {
			rep.skip("values not FIRST,LAST")
			return
		}
		first, err1 := strconv.ParseInt(f[0], 10, 64)
		last, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || first <= 0 || last < first {
			rep.skip("values not FIRST,LAST")
			return
		}
		r := greylist.Record{FirstSeen: time.Unix(first, 0), LastSeen: time.Unix(last, 0), Attempts: 1}
		if time.Duration(last-first)*time.Second >= o.Delay {
			// postgrey keeps no time of the pass: the earliest it can
			// have been is a delay after the first attempt.
			r.PassedAt = r.FirstSeen.Add(o.Delay)
			r.Attempts = 2
		}
		m.triplet(k, r)
	})
	if err != nil {
		return nil, rep, err
	}
	if _, err := os.Stat(filepath.Join(dir, "postgrey_clients.db")); err == nil {
		err := dbDump(ctx, dir, "postgrey_clients.db", func(key, value string) {
			addr, err := netip.ParseAddr(key)
			f := strings.Split(value, ",")
			if err != nil || len(f) < 2 {
				rep.skip("auto-whitelist entries not ADDRESS -> COUNT,LAST")
				return
			}
			count, err1 := strconv.Atoi(f[0])
			last, err2 := strconv.ParseInt(f[1], 10, 64)
			if err1 != nil || err2 != nil || count < 1 {
				rep.skip("auto-whitelist entries not ADDRESS -> COUNT,LAST")
				return
			}
			m.addPasses(o.Keyer.Client(addr), count, time.Unix(last, 0))
		})
		if err != nil {
			return nil, rep, err
		}
	}
	return m.result(&rep), rep, nil
}

// postgreyKey reads "CLIENT_NET/SENDER/RECIPIENT".
func postgreyKey(key string, keyer greylist.Keyer) (greylist.Key, bool) {
	i, j := strings.IndexByte(key, '/'), strings.LastIndexByte(key, '/')
	if i < 0 || i == j {
		return greylist.Key{}, false
	}
	addr, err := netip.ParseAddr(key[:i])
	if err != nil {
		return greylist.Key{}, false
	}
	return greylist.Key{Client: keyer.Client(addr), Sender: greylist.NormalizeSender(key[i+1 : j]), Recipient: greylist.NormalizeRecipient(key[j+1:])}, true
}

// dbDump runs db_dump on file in the Berkeley DB environment dir and hands
// each key and value to fn.
func dbDump(ctx context.Context, dir, file string, fn func(key, value string)) error {
	bin, err := exec.LookPath("db_dump")
	if err != nil {
		if bin, err = exec.LookPath("db5.3_dump"); err != nil {
			return errors.New("db_dump not found: install Debian's db-util (apt-get install db-util)")
		}
	}
	cmd := exec.CommandContext(ctx, bin, "-p", filepath.Join(dir, file))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("db_dump %s: %w", file, err)
	}
	perr := parseDump(out, fn)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("db_dump %s: %w: %s", file, err, strings.TrimSpace(stderr.String()))
	}
	if perr != nil {
		return fmt.Errorf("db_dump %s: %w", file, perr)
	}
	return nil
}

// parseDump reads db_dump -p output: a header up to HEADER=END, then
// key and value lines, each starting with a space, until DATA=END.
// Printable bytes stand for themselves, "\\" for a backslash and "\XX"
// (hex) for any other byte.
func parseDump(r io.Reader, fn func(key, value string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	inData := false
	var key *string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !inData:
			inData = line == "HEADER=END"
		case line == "DATA=END":
			inData = false
			if key != nil {
				return errors.New("a key without a value")
			}
		case strings.HasPrefix(line, " "):
			s, err := unescapeDump(line[1:])
			if err != nil {
				return err
			}
			if key == nil {
				key = &s
			} else {
				fn(*key, s)
				key = nil
			}
		default:
			return fmt.Errorf("unexpected line %q", line)
		}
	}
	return sc.Err()
}

func unescapeDump(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			b.WriteByte('\\')
			i++
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.Write(v)
		i += 2
	}
	return b.String(), nil
}

// SQLgrey reads sqlgrey's tables from db: connect (triplets waiting, keyed
// by an address or, under its "smart" and "classc" methods, a class C
// network "192.0.2"), from_awl (sender and client pairs that passed:
// greymilter has no such pairs, so each counts a pass of its client) and
// domain_awl (clients auto-whitelisted for a domain: they get
// o.AutoWhitelist passes, so that greymilter trusts them too).
func SQLgrey(ctx context.Context, db *sql.DB, o Options) (*greylist.Imported, Report, error) {
	var rep Report
	m := newMerger()
	err := eachRow(ctx, db, `SELECT sender_name, sender_domain, src, rcpt, first_seen FROM connect`, func(scan func(...any) error) error {
		var name, domain, src, rcpt string
		var first any
		if err := scan(&name, &domain, &src, &rcpt, &first); err != nil {
			return err
		}
		client, ok := sqlgreyClient(src, o.Keyer)
		t, tok := sqlgreyTime(first)
		if !ok || !tok {
			rep.skip("connect rows with an unreadable src or first_seen")
			return nil
		}
		sender := name + "@" + domain
		if name == "" && domain == "" {
			sender = ""
		}
		m.triplet(greylist.Key{Client: client, Sender: greylist.NormalizeSender(sender), Recipient: greylist.NormalizeRecipient(rcpt)},
			greylist.Record{FirstSeen: t, LastSeen: t, Attempts: 1})
		return nil
	})
	if err != nil {
		return nil, rep, fmt.Errorf("sqlgrey connect: %w", err)
	}
	// A sender auto-whitelist row counts one pass for its client; a
	// domain auto-whitelist row makes its client auto-whitelisted.
	for _, awl := range []struct {
		table  string
		passes int
	}{{"from_awl", 1}, {"domain_awl", max(o.AutoWhitelist, 1)}} {
		err = eachRow(ctx, db, `SELECT src, last_seen FROM `+awl.table, func(scan func(...any) error) error {
			var src string
			var last any
			if err := scan(&src, &last); err != nil {
				return err
			}
			client, ok := sqlgreyClient(src, o.Keyer)
			t, tok := sqlgreyTime(last)
			if !ok || !tok {
				rep.skip(awl.table + " rows with an unreadable src or last_seen")
				return nil
			}
			m.addPasses(client, awl.passes, t)
			return nil
		})
		if err != nil {
			return nil, rep, fmt.Errorf("sqlgrey %s: %w", awl.table, err)
		}
	}
	return m.result(&rep), rep, nil
}

func eachRow(ctx context.Context, db *sql.DB, query string, fn func(scan func(...any) error) error) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// sqlgreyClient keys an sqlgrey src: an address, or a class C network
// written as its first three octets.
func sqlgreyClient(src string, keyer greylist.Keyer) (string, bool) {
	if addr, err := netip.ParseAddr(src); err == nil {
		return keyer.Client(addr), true
	}
	if strings.Count(src, ".") == 2 {
		if addr, err := netip.ParseAddr(src + ".0"); err == nil {
			if keyer.IPv4Prefix <= 24 && !keyer.ByHost {
				return keyer.Client(addr), true
			}
			return netip.PrefixFrom(addr, 24).String(), true
		}
	}
	return "", false
}

// sqlgreyTime reads a timestamp: sqlgrey's SQLite now() writes unix
// seconds; PostgreSQL and MySQL give times or "YYYY-MM-DD HH:MM:SS".
func sqlgreyTime(v any) (time.Time, bool) {
	switch v := v.(type) {
	case int64:
		return time.Unix(v, 0), v > 0
	case float64:
		return time.Unix(int64(v), 0), v > 0
	case time.Time:
		return v, !v.IsZero()
	case []byte:
		return sqlgreyTime(string(v))
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return sqlgreyTime(n)
		}
		for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04:05.999999999", time.RFC3339Nano} {
			if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}
