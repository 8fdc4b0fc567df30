package engine

import (
	"context"
	"net/netip"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// RuntimeWhitelist passes clients that an administrator whitelisted in the
// store (`greymilter db whitelist`), until their entry expires. It runs
// after the list files, so that a blacklist file still wins.
type RuntimeWhitelist struct {
	Entries interface {
		Whitelisted(addr netip.Addr, now time.Time) (greylist.WhitelistEntry, bool)
	}
}

// Name implements Step.
func (*RuntimeWhitelist) Name() string { return "whitelist" }

// Run implements Step.
func (w *RuntimeWhitelist) Run(_ context.Context, d *Decision) (bool, error) {
	e, ok := w.Entries.Whitelisted(d.Req.ClientAddr, d.Now)
	if !ok {
		return false, nil
	}
	d.Note("whitelist_entry", e.Network.String())
	if !e.Expires.IsZero() {
		d.Note("whitelist_expires", e.Expires.UTC().Format(time.RFC3339))
	}
	d.Verdict = Verdict{Action: Pass, Reason: "runtime-whitelist"}
	return true, nil
}
