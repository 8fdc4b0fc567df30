// Package policyd is greymilter's second front end: a server for the Postfix
// SMTP access policy delegation protocol (check_policy_service), which Exim
// also speaks through ${readsocket}.
//
// A request is a block of name=value lines ended by an empty line; the
// answer is one action=... line, also ended by an empty line. One connection
// carries many requests. Only requests in the RCPT state are judged, by the
// same engine the milter uses; every other state is answered DUNNO. The
// verdict maps to Postfix access(5) actions:
//
//	Defer  -> DEFER_IF_PERMIT 4.7.1 <text>
//	Reject -> <code> <ecode> <text>, a plain SMTP reply (550 5.7.1 <text>)
//	Pass   -> PREPEND <header> when the verdict carries headers, else DUNNO
//
// A policy answer holds one action, and PREPEND takes one header. The server
// therefore keeps, per connection and per message (the "instance"
// attribute), the headers it still owes: each answer that may carry a header
// prepends the next one, so a message whose verdict carries two headers gets
// the second on its next recipient, or in the DATA state when
// check_policy_service is also listed in smtpd_data_restrictions. A header
// name is prepended at most once per message, as postgrey does for
// X-Greylist.
package policyd
