package checks

import "strings"

// SenderIsRecipient scores a sender equal to the recipient (case
// ignored) Scores.SenderIsRecipient: spam forges the victim's own address
// as the sender far more often than people mail themselves from outside.
func SenderIsRecipient(in Input, s Scores) Result {
	if in.Sender != "" && strings.EqualFold(in.Sender, in.Recipient) {
		return Result{Check: "sender", Score: s.SenderIsRecipient, Reason: "is-recipient"}
	}
	return Result{Check: "sender", Reason: "differs"}
}
