package engine

import (
	"context"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/lists"
)

// DefaultBlacklistText is the reply to a blacklisted client or sender.
const DefaultBlacklistText = "Rejected by local policy: {CLIENT} <{SENDER}> is blacklisted"

// Lists applies the administrator's list files: a blacklisted client or
// sender is rejected with 550 5.7.1, a whitelisted client, sender or
// recipient passes without greylisting. A blacklist match wins over a
// whitelist match. The log line names the file and line that matched.
type Lists struct {
	Set *lists.Set
	// BlacklistText is the reply template for a blacklist match ({CLIENT},
	// {SENDER}, {RECIPIENT}); DefaultBlacklistText when empty.
	BlacklistText string
}

// Name implements Step.
func (*Lists) Name() string { return "lists" }

// Run implements Step.
func (l *Lists) Run(_ context.Context, d *Decision) (bool, error) {
	r := l.Set.Check(d.Req.ClientAddr, d.Req.ClientName, d.Req.Sender, greylist.UnwrapSender(d.Req.Sender), d.Req.Recipient)
	switch r.Verdict {
	case lists.Blacklisted:
		text := l.BlacklistText
		if text == "" {
			text = DefaultBlacklistText
		}
		d.Verdict = Verdict{Action: Reject, Code: 550, ECode: "5.7.1", Text: ExpandTemplate(text, d.Req, 0), Reason: "blacklist"}
	case lists.Whitelisted:
		d.Verdict = Verdict{Action: Pass, Reason: "whitelist"}
	default:
		return false, nil
	}
	d.Note("list", r.Source.String())
	d.Note("listed", r.Subject)
	return true, nil
}
