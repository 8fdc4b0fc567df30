// Package checks holds greymilter's suspicion heuristics (bley's idea): small
// checks that each look at one trait of an SMTP transaction and say how
// suspicious it makes the sender, with a score and a one-word reason for the
// log. The engine adds the scores up; in mode "suspicious" a sender below the
// threshold is not greylisted.
//
// The checks:
//
//   - helo: the HELO name against the client's verified name. Equal scores 0;
//     the same registrable domain (public suffix list), or an address literal
//     ([192.0.2.1], [IPv6:2001:db8::1]) that is the client's address, scores
//     Scores.HeloSameDomain; anything else Scores.HeloMismatch.
//   - rdns: a client without a verified reverse name scores Scores.NoReverse.
//     When the MTA gave none, the check looks the name up itself (PTR, then
//     A/AAAA to confirm it), so that an unverified but dynamic-looking PTR
//     name still counts.
//   - dynamic: a name that looks like an end-user line (the client's address
//     embedded in it, or words such as dsl, dyn, pool, ppp) scores
//     Scores.Dynamic, unless it also looks like a mail server's (mail, mx,
//     smtp, static...). The patterns are a data file (see Patterns).
//   - sender: a sender equal to the recipient scores Scores.SenderIsRecipient.
//   - spf: the sender's SPF result (RFC 7208, blitiri.com.ar/go/spf, through
//     the caller's resolver and with a deadline): fail and softfail add
//     Scores.SPFFail and Scores.SPFSoftFail, pass adds Scores.SPFPass (below
//     zero: it lowers the score), and every other result abstains.
//
// Checks that need DNS abstain when the lookup fails or runs out of time:
// a broken resolver must neither let spam through nor hold mail back.
package checks
