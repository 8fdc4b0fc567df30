// Package greylist holds the greylisting rules: how a (client, sender,
// recipient) triplet is keyed, how long it waits, when it passes, how long it
// is remembered, and the Store that keeps that state across restarts.
package greylist

import (
	"net/netip"
	"strings"
)

// Key identifies a triplet. Its parts are already normalised.
type Key struct {
	Client    string // subnet ("192.0.2.0/24"), address, or identity ("spf:example.com")
	Sender    string // folded sender address; "" is the null sender
	Recipient string // lowercased recipient address
}

// Keyer turns the raw parts of a request into a Key.
type Keyer struct {
	IPv4Prefix int  // bits kept of an IPv4 client address (default 24)
	IPv6Prefix int  // bits kept of an IPv6 client address (default 64)
	ByHost     bool // keep the exact address
}

// DefaultKeyer groups IPv4 clients by /24 and IPv6 clients by /64, as
// postgrey does: mail servers often retry from a neighbouring address.
var DefaultKeyer = Keyer{IPv4Prefix: 24, IPv6Prefix: 64}

// Key builds the triplet key of a request.
func (k Keyer) Key(client netip.Addr, sender, recipient string) Key {
	return Key{Client: k.Client(client), Sender: NormalizeSender(sender), Recipient: NormalizeRecipient(recipient)}
}

// Client returns the client part of a triplet for an address.
func (k Keyer) Client(a netip.Addr) string {
	a = a.Unmap()
	if k.ByHost || !a.IsValid() {
		return a.String()
	}
	bits := k.IPv6Prefix
	if a.Is4() {
		bits = k.IPv4Prefix
	}
	if bits <= 0 || bits >= a.BitLen() {
		return a.String()
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// NormalizeRecipient lowercases a recipient address.
func NormalizeRecipient(r string) string {
	return strings.ToLower(strings.TrimSpace(r))
}

// NormalizeSender folds the parts of a sender address that change from
// message to message of the same sender, so that a retry, a bounce or the
// next mailing-list post keeps one key:
//   - BATV tags and SRS forwarding, as UnwrapSender;
//   - VERP and similar: a "+extension" is dropped, numbers and long hex
//     tokens in the local part become "#".
func NormalizeSender(s string) string {
	s = UnwrapSender(s)
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	local, domain := s[:at], s[at+1:]
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return foldNumbers(local) + "@" + domain
}

// UnwrapSender returns the lowercased address a sender stands for:
//   - BATV tags are removed: prvs=TAG=user, msprvs1=TAG=user, btv1==TAG==user;
//   - SRS0/SRS1 forwarding gives the original address.
//
// It returns the lowercased s itself when there is nothing to unwrap.
func UnwrapSender(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	local := stripBATV(s[:at])
	if orig, ok := unwrapSRS(local); ok {
		return UnwrapSender(orig)
	}
	if len(local) == at {
		return s
	}
	return local + s[at:]
}

func stripBATV(local string) string {
	for _, prefix := range []string{"prvs=", "msprvs1=", "btv1=="} {
		if !strings.HasPrefix(local, prefix) {
			continue
		}
		rest := local[len(prefix):]
		// The tag ends at the next "=" ("==" for btv1).
		sep := "="
		if prefix == "btv1==" {
			sep = "=="
		}
		if _, user, ok := strings.Cut(rest, sep); ok && user != "" {
			return user
		}
	}
	return local
}

// unwrapSRS returns the original address wrapped by an SRS0 or SRS1 local
// part: SRS0=HASH=TT=domain=local and SRS1=HASH=fwd==HASH=TT=domain=local.
func unwrapSRS(local string) (string, bool) {
	var rest string
	switch {
	case strings.HasPrefix(local, "srs0=") || strings.HasPrefix(local, "srs0+") || strings.HasPrefix(local, "srs0-"):
		rest = local[5:]
		// HASH=TT=domain=local
		parts := strings.SplitN(rest, "=", 4)
		if len(parts) != 4 || parts[2] == "" || parts[3] == "" {
			return "", false
		}
		return parts[3] + "@" + parts[2], true
	case strings.HasPrefix(local, "srs1=") || strings.HasPrefix(local, "srs1+") || strings.HasPrefix(local, "srs1-"):
		// HASH=forwarder==HASH=TT=domain=local: the part after "==" is an SRS0 tail.
		_, tail, ok := strings.Cut(local[5:], "==")
		if !ok {
			return "", false
		}
		parts := strings.SplitN(tail, "=", 4)
		if len(parts) != 4 || parts[2] == "" || parts[3] == "" {
			return "", false
		}
		return parts[3] + "@" + parts[2], true
	}
	return "", false
}

// foldNumbers replaces every token of the local part that is all digits, or
// a long hex string with digits in it, by "#". Tokens are separated by
// anything that is not a letter or digit, as \b in postgrey's regex.
func foldNumbers(local string) string {
	var b strings.Builder
	changed := false
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		tok := local[start:end]
		if isVariableToken(tok) {
			b.WriteByte('#')
			changed = true
		} else {
			b.WriteString(tok)
		}
		start = -1
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if isAlnum(c) {
			if start < 0 {
				start = i
			}
			continue
		}
		flush(i)
		b.WriteByte(c)
	}
	flush(len(local))
	if !changed {
		return local
	}
	return b.String()
}

func isVariableToken(tok string) bool {
	digits, hex := 0, true
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f':
		default:
			hex = false
		}
	}
	if digits == len(tok) {
		return true
	}
	return hex && digits > 0 && len(tok) >= 12
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z'
}
