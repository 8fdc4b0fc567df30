// Package lists reads the white and black list files mail administrators
// already keep, and answers whether a client, sender or recipient is on one.
//
// One parser reads every kind of list. It is a superset of postgrey's
// whitelist_clients and whitelist_recipients files and of pygreylist's
// wildcard address files, so those files are read unchanged. One rule per
// line; '#' starts a comment (also inside a regex: write \x23 for a literal
// '#'); blank lines and surrounding blanks are ignored.
//
// Client lists (Clients) accept:
//
//	192.0.2.7              one IPv4 address
//	2001:db8::7            one IPv6 address (::ffff:192.0.2.7 is 192.0.2.7)
//	192.0.2.0/24           a network; host bits may be set (192.0.2.7/24)
//	2001:db8::/32          an IPv6 network
//	192.0.2                postgrey's partial form: that /24
//	10.1                   postgrey's partial form: that /16 (postgrey
//	                       itself wrongly masks this one as a /24)
//	192.168.*.*  10.0.0.?  wildcards per octet as in a shell pattern: '*' is
//	                       any number of digits, '?' exactly one; a trailing
//	                       '*' stands for the octets left out (192.168.*)
//	example.com            the client name example.com and all its subdomains
//	/^mail\d+\.example\./  a regular expression (Go RE2), matched without
//	                       regard to case against the client name
//
// Names and regexes match the client name the MTA verified (forward-confirmed
// reverse DNS). A client without one ("" or "unknown") never matches a name
// or regex rule.
//
// Sender and recipient lists (Addresses) accept:
//
//	user@example.com       that address, and user+ext@example.com
//	postmaster@            that local part (and its +ext forms) at any domain
//	@example.com           any local part at exactly example.com (Postfix
//	*@example.com          access(5) style); *@ is no other wildcard
//	example.com            any address at example.com or its subdomains
//	<>                     the null sender (bounces), in sender lists
//	<user@example.com>     angle brackets around a whole address are dropped
//	/regex/                a regular expression matched without regard to
//	                       case against the whole address (the null sender
//	                       is the empty string, so /^$/ matches it too)
//
// A rule that could never match is refused with its FILE:LINE and a hint,
// never loaded: other wildcards in a local part (user*@, us?r@), a leading
// dot (.example.com), stray angle brackets, <> in a recipient list.
//
// Sender lists match the sender as given and the address behind a BATV tag
// or SRS forwarding (prvs=TAG=user@example.com is user@example.com): see
// Set.Check.
//
// Address matching does not walk the list: networks are flattened into a
// sorted table of disjoint ranges searched in O(log n), and names, domains and
// addresses are map lookups on each suffix of the name. Only regexes are tried
// one after another, so keep them few.
//
// A Set holds every configured list, re-reads them all on Reload, and swaps
// them in atomically only when every file parsed: a broken file never leaves
// a half-loaded set in force.
package lists
