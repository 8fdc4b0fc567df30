package engine

import (
	"context"
	"net/netip"
)

// Bypass lets authenticated senders, clients from trusted networks and
// local submissions (no client address: the MTA's own pickup, a unix
// socket) through before anything else is looked at.
type Bypass struct {
	Trusted []netip.Prefix
}

// Name implements Step.
func (*Bypass) Name() string { return "bypass" }

// Run implements Step.
func (b *Bypass) Run(_ context.Context, d *Decision) (bool, error) {
	if d.Req.AuthUser != "" {
		d.Verdict = Verdict{Action: Pass, Reason: "authenticated"}
		d.Note("auth_user", d.Req.AuthUser)
		return true, nil
	}
	if !d.Req.ClientAddr.IsValid() {
		d.Verdict = Verdict{Action: Pass, Reason: "local"}
		return true, nil
	}
	for _, p := range b.Trusted {
		if p.Contains(d.Req.ClientAddr) {
			d.Verdict = Verdict{Action: Pass, Reason: "trusted"}
			d.Note("trusted_network", p.String())
			return true, nil
		}
	}
	return false, nil
}
