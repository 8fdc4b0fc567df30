package greylist

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// ExportLine is one line of an export (JSON lines): a triplet, a client
// or a runtime whitelist entry, told apart by Type. The format is the same
// whatever the store, so that state moves between hosts and from SQLite to
// PostgreSQL.
type ExportLine struct {
	Type      string    `json:"type"` // "triplet", "client", "whitelist"; "slow-retrier" in listings only
	Client    string    `json:"client,omitempty"`
	Sender    *string   `json:"sender,omitempty"` // "" is the null sender: a pointer keeps it
	Recipient string    `json:"recipient,omitempty"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	PassedAt  time.Time `json:"passed_at,omitzero"`
	Attempts  int       `json:"attempts,omitempty"`
	Passes    int       `json:"passes,omitempty"`
	Network   string    `json:"network,omitempty"`
	Added     time.Time `json:"added,omitzero"`
	Expires   time.Time `json:"expires,omitzero"`
	Note      string    `json:"note,omitempty"`
	// A slow retrier's domain (hashed under --privacy) and how many
	// clients retried its mail late; Passes is how many of them passed.
	Domain      string `json:"domain,omitempty"`
	LateClients int    `json:"late_clients,omitempty"`
}

// TripletLine is the export line of a triplet.
func TripletLine(t Triplet) ExportLine {
	sender := t.Sender
	return ExportLine{Type: "triplet", Client: t.Client, Sender: &sender, Recipient: t.Recipient,
		FirstSeen: t.FirstSeen.UTC(), LastSeen: t.LastSeen.UTC(), PassedAt: utc(t.PassedAt), Attempts: t.Attempts}
}

// ClientLine is the export line of a client.
func ClientLine(c ClientEntry) ExportLine {
	return ExportLine{Type: "client", Client: c.Client, Passes: c.Passes, LastSeen: utc(c.LastSeen)}
}

// SlowRetrierLine is the listing line of a slow retrier.
func SlowRetrierLine(r SlowRetrier) ExportLine {
	return ExportLine{Type: "slow-retrier", Domain: r.Domain, LateClients: r.LateClients, Passes: r.Passed, LastSeen: utc(r.LastSeen)}
}

// WhitelistLine is the export line of a runtime whitelist entry.
func WhitelistLine(e WhitelistEntry) ExportLine {
	return ExportLine{Type: "whitelist", Network: e.Network.String(), Added: utc(e.Added), Expires: utc(e.Expires), Note: e.Note}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// Export writes everything a store holds but its decision counts to w,
// one JSON object a line, and returns the number of lines.
func Export(ctx context.Context, a Admin, w io.Writer) (int, error) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n, err := ExportLines(ctx, a, func(l ExportLine) error { return enc.Encode(l) })
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// ExportLines hands everything a store holds but its decision counts to
// emit, a line at a time: triplets, clients, runtime whitelist entries.
func ExportLines(ctx context.Context, a Admin, emit func(ExportLine) error) (int, error) {
	n := 0
	put := func(l ExportLine) error {
		n++
		return emit(l)
	}
	ts, err := a.List(ctx, Filter{})
	if err != nil {
		return 0, err
	}
	for _, t := range ts {
		if err := put(TripletLine(t)); err != nil {
			return n, err
		}
	}
	cs, err := a.Clients(ctx)
	if err != nil {
		return n, err
	}
	for _, c := range cs {
		if err := put(ClientLine(c)); err != nil {
			return n, err
		}
	}
	es, err := a.Whitelist(ctx)
	if err != nil {
		return n, err
	}
	for _, e := range es {
		if err := put(WhitelistLine(e)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Imported is what an import holds, read and checked whole before
// anything is written, so that a bad line leaves the store as it was.
type Imported struct {
	Triplets  []Triplet
	Clients   []ClientEntry
	Whitelist []WhitelistEntry
}

// Len is the number of records.
func (im *Imported) Len() int { return len(im.Triplets) + len(im.Clients) + len(im.Whitelist) }

// ReadExport reads what Export wrote; name is used in errors ("NAME:LINE: ...").
func ReadExport(r io.Reader, name string) (*Imported, error) {
	im := &Imported{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var l ExportLine
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if err := im.Add(l); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return im, nil
}

// Add checks one export line and adds it.
func (im *Imported) Add(l ExportLine) error {
	switch l.Type {
	case "triplet":
		if l.Client == "" || l.Sender == nil || l.Recipient == "" {
			return fmt.Errorf("triplet without client, sender or recipient")
		}
		if l.FirstSeen.IsZero() || l.LastSeen.IsZero() || l.Attempts < 1 {
			return fmt.Errorf("triplet %s <%s> <%s>: first_seen, last_seen and attempts (1 or more) are needed", l.Client, *l.Sender, l.Recipient)
		}
		im.Triplets = append(im.Triplets, Triplet{
			Key:    Key{Client: l.Client, Sender: *l.Sender, Recipient: l.Recipient},
			Record: Record{FirstSeen: l.FirstSeen, LastSeen: l.LastSeen, PassedAt: l.PassedAt, Attempts: l.Attempts},
		})
	case "client":
		if l.Client == "" || l.Passes < 1 || l.LastSeen.IsZero() {
			return fmt.Errorf("client without client, passes (1 or more) or last_seen")
		}
		im.Clients = append(im.Clients, ClientEntry{Client: l.Client, ClientRecord: ClientRecord{Passes: l.Passes, LastSeen: l.LastSeen}})
	case "whitelist":
		p, err := ParseNetwork(l.Network)
		if err != nil {
			return fmt.Errorf("whitelist: network %w", err)
		}
		im.Whitelist = append(im.Whitelist, WhitelistEntry{Network: p, Added: l.Added, Expires: l.Expires, Note: l.Note})
	default:
		return fmt.Errorf("unknown type %q (want triplet, client or whitelist)", l.Type)
	}
	return nil
}

// importBatch is how many records one store call writes.
const importBatch = 500

// Write stores what was imported into a.
func (im *Imported) Write(ctx context.Context, a Admin) error {
	for i := 0; i < len(im.Triplets); i += importBatch {
		if err := a.PutTriplets(ctx, im.Triplets[i:min(i+importBatch, len(im.Triplets))]); err != nil {
			return err
		}
	}
	for i := 0; i < len(im.Clients); i += importBatch {
		if err := a.PutClients(ctx, im.Clients[i:min(i+importBatch, len(im.Clients))]); err != nil {
			return err
		}
	}
	for _, e := range im.Whitelist {
		if err := a.AddWhitelist(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// Lines gives what was imported back as export lines, to send on.
func (im *Imported) Lines() []ExportLine {
	out := make([]ExportLine, 0, im.Len())
	for _, t := range im.Triplets {
		out = append(out, TripletLine(t))
	}
	for _, c := range im.Clients {
		out = append(out, ClientLine(c))
	}
	for _, e := range im.Whitelist {
		out = append(out, WhitelistLine(e))
	}
	return out
}
