package engine

import (
	"context"

	"github.com/greymilter/greymilter/rules"
)

// TLSClient is what the MTA says about the client's TLS certificate.
type TLSClient struct {
	// Verified: the MTA verified the client's certificate (Sendmail's
	// {verify} OK; Postfix sends the subject only for a verified one).
	Verified    bool
	Subject     string // the certificate's subject (Postfix: its CN)
	Issuer      string
	Fingerprint string // Postfix policy protocol's ccert_fingerprint
}

// Rules finds the first line of the rules file that matches the request
// and keeps it in d.Rule for the later steps: the DNSBL step takes its
// action, the suspicion step its mode, the greylist step its mode, delay,
// retry window and text. It never settles the verdict itself, so that the
// lists' blacklists and a DNSBL's rejection still apply under any rule.
type Rules struct {
	Set *rules.Set
}

// Name implements Step.
func (*Rules) Name() string { return "rules" }

// Run implements Step.
func (s *Rules) Run(ctx context.Context, d *Decision) (bool, error) {
	r := d.Req
	in := rules.Input{Addr: r.ClientAddr, Name: r.ClientName, Helo: r.Helo, Sender: r.Sender, Recipient: r.Recipient}
	if r.TLS.Verified {
		in.CertSubject, in.CertIssuer = r.TLS.Subject, r.TLS.Issuer
	}
	// A fingerprint names one certificate whether or not a CA vouches for
	// it: pinning it is the point.
	in.CertFingerprint = r.TLS.Fingerprint
	if d.Rule = s.Set.Match(ctx, &in); d.Rule != nil {
		d.Note("rule", d.Rule.String())
	}
	return false, nil
}

// mode is the greylisting mode of d: its rule's, else def.
func (d *Decision) mode(def rules.Mode) rules.Mode {
	if d.Rule != nil && d.Rule.Mode != rules.ModeUnset {
		return d.Rule.Mode
	}
	return def
}

// VerifiedTLS passes clients whose certificate the MTA verified
// (--bypass-verified-tls, milter-greylist's tls clause): a client that
// holds a certificate a trusted CA signed is a mail server someone runs.
type VerifiedTLS struct{}

// Name implements Step.
func (VerifiedTLS) Name() string { return "tls" }

// Run implements Step.
func (VerifiedTLS) Run(_ context.Context, d *Decision) (bool, error) {
	if !d.Req.TLS.Verified {
		return false, nil
	}
	d.Note("cert_subject", d.Req.TLS.Subject)
	d.Verdict = Verdict{Action: Pass, Reason: "verified-tls"}
	return true, nil
}
