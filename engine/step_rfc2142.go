package engine

import (
	"context"
	"strings"
)

// RFC2142 lets mail to postmaster@ and abuse@ through without greylisting,
// DNS list or suspicion checks: a site must stay reachable about its own
// problems (RFC 2142; RFC 5321 4.5.1 wants postmaster to take mail), also
// from a client that a DNSBL lists, perhaps wrongly, or that never retries.
// The administrator's blacklists still apply: the step runs after them.
//
// Every domain of a recipient counts as local: greymilter is asked only
// about recipients the MTA has already agreed to take (its relay check
// runs first, and relayed mail from trusted or authenticated clients has
// passed the bypass step), so postmaster@ of any domain it is asked about
// is one of the site's own (a local, virtual or relay domain).
type RFC2142 struct{}

// Name implements Step.
func (*RFC2142) Name() string { return "rfc2142" }

// Run implements Step.
func (*RFC2142) Run(_ context.Context, d *Decision) (bool, error) {
	local := d.Req.Recipient
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	if !strings.EqualFold(local, "postmaster") && !strings.EqualFold(local, "abuse") {
		return false, nil
	}
	d.Verdict = Verdict{Action: Pass, Reason: "rfc2142"}
	return true, nil
}
