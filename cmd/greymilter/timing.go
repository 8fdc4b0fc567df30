package main

import (
	"fmt"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// checkTiming refuses timing flags under which no unlisted mail could ever
// pass greylisting: senders would retry for days, then bounce, and nothing
// would say why.
func checkTiming(r greylist.Rules) error {
	if r.RetryWindow <= r.Delay {
		return fmt.Errorf("--retry-window %s must be longer than --delay %s: a retry passes only after the delay and within the window", fmtDuration(r.RetryWindow), fmtDuration(r.Delay))
	}
	if r.PurgeUnverified > 0 && r.PurgeUnverified <= r.Delay {
		return fmt.Errorf("--purge-unverified %s must be longer than --delay %s: a waiting triplet would be forgotten before its retry could pass", fmtDuration(r.PurgeUnverified), fmtDuration(r.Delay))
	}
	if r.MaxAge > 0 && r.MaxAge <= r.Delay {
		return fmt.Errorf("--max-age %s must be longer than --delay %s: a waiting triplet would be forgotten before its retry could pass", fmtDuration(r.MaxAge), fmtDuration(r.Delay))
	}
	if r.Penalty > 0 && r.MaxWait <= r.Delay {
		return fmt.Errorf("--max-wait %s must be longer than --delay %s: it caps the wait that --penalty %s adds to, which could never grow", fmtDuration(r.MaxWait), fmtDuration(r.Delay), fmtDuration(r.Penalty))
	}
	return nil
}

// fmtDuration writes d the way the flags take it back.
func fmtDuration(d time.Duration) string { return (&durationValue{p: &d}).String() }
