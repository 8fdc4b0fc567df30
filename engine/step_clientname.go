package engine

import (
	"context"

	"github.com/greymilter/greymilter/checks"
)

// ConfirmName checks a client name that the MTA gave without vouching for
// it (Request.ClaimedName, e.g. Sendmail's PTR name when {client_resolve}
// is not OK) with greymilter's own reverse and forward lookups, the way
// the suspicion checks do: a PTR name counts only when it resolves back to
// the client. Whoever controls a PTR record can write any name in it, so
// before this step no name rule (a whitelist's google.com) may see the
// claimed name. It runs before the lists and never settles the verdict;
// a confirmed name goes into Request.ClientName.
type ConfirmName struct {
	Resolver checks.Resolver
}

// Name implements Step.
func (*ConfirmName) Name() string { return "client-name" }

// Run implements Step.
func (s *ConfirmName) Run(ctx context.Context, d *Decision) (bool, error) {
	r := d.Req
	if r.ClientName != "" || r.ClaimedName == "" || !r.ClientAddr.IsValid() {
		return false, nil
	}
	d.Note("claimed_name", r.ClaimedName)
	found, err := checks.LookupReverse(ctx, s.Resolver, r.ClientAddr)
	switch {
	case found.Verified != "":
		r.ClientName = found.Verified
		d.Note("name_check", "confirmed")
	case err != nil:
		d.Note("name_check", "lookup-failed")
		d.Note("name_check_error", err.Error())
	default:
		d.Note("name_check", "not-confirmed")
	}
	return false, nil
}
