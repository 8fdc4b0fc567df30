package checks

import (
	"net/netip"
	"strconv"
)

// Result is the verdict of one check on one transaction.
type Result struct {
	Check  string // which check: "rdns", "helo", "dynamic", "sender", "spf"
	Score  int    // what it adds to the suspicion score; below zero lowers it
	Reason string // why, in one word, for the log
}

// String formats the result for the log as "+2:mismatch".
func (r Result) String() string {
	s := strconv.Itoa(r.Score)
	if r.Score > 0 {
		s = "+" + s
	}
	return s + ":" + r.Reason
}

// Sum adds up the scores of results.
func Sum(results []Result) int {
	total := 0
	for _, r := range results {
		total += r.Score
	}
	return total
}

// Scores are what each finding adds to the suspicion score. The defaults
// (DefaultScores) are tuned for a threshold of 2: one sign of a botnet host
// (no or a dynamic-looking name, a HELO that has nothing to do with the
// client, an SPF fail) reaches it on its own; milder signs need company.
type Scores struct {
	HeloSameDomain    int // HELO in the client name's registrable domain, or the client's address literal
	HeloMismatch      int // any other HELO
	NoReverse         int // no verified reverse name
	Dynamic           int // the name looks like an end-user line
	SenderIsRecipient int // the sender is the recipient
	SPFFail           int // SPF fail
	SPFSoftFail       int // SPF softfail
	SPFPass           int // SPF pass; below zero to lower the score
}

// DefaultScores are the scores greymilter uses unless told otherwise.
var DefaultScores = Scores{
	HeloSameDomain:    1,
	HeloMismatch:      2,
	NoReverse:         1,
	Dynamic:           2,
	SenderIsRecipient: 1,
	SPFFail:           2,
	SPFSoftFail:       1,
	SPFPass:           -1,
}

// Input is what the checks look at: one recipient of one transaction.
type Input struct {
	Addr      netip.Addr // the client's address
	Name      string     // the client's verified reverse name; "" when it has none
	Helo      string     // the HELO/EHLO argument
	Sender    string     // envelope sender; "" is the null sender
	Recipient string     // envelope recipient
}
