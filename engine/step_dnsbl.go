package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/greymilter/greymilter/checks"
	"github.com/greymilter/greymilter/dnsbl"
)

// Defaults of the DNSBL step's reply.
const (
	DefaultDNSBLText   = "Rejected. Address {ADDR} found in {DNSBL}"
	DefaultDNSBLHeader = "{ADDR} listed in {DNSBL}"
	DefaultDNSBLCode   = 550
	DefaultDNSBLECode  = "5.7.1"
)

// DNSWL passes clients that enough DNS allow lists list (the list's
// policy holds the threshold), before any greylisting.
type DNSWL struct {
	List *dnsbl.List
}

// Name implements Step.
func (*DNSWL) Name() string { return "dnswl" }

// Run implements Step.
func (s *DNSWL) Run(ctx context.Context, d *Decision) (bool, error) {
	res, ok := check(ctx, s.List, d, "dnswl")
	if !ok || !res.Listed {
		return false, nil
	}
	d.Note("dnswl", strings.Join(res.HitZones(), ","))
	d.Verdict = Verdict{Action: Pass, Reason: "dnswl"}
	return true, nil
}

// DNSBLAction is what the DNSBL step does with a listed client.
type DNSBLAction int

const (
	// DNSBLReject rejects the recipient (550 5.7.1 by default).
	DNSBLReject DNSBLAction = iota
	// DNSBLGreylist greylists the client whatever later steps say.
	DNSBLGreylist
	// DNSBLMark adds an X-RBL-Warning header and lets later steps decide.
	DNSBLMark
	// DNSBLScore adds the listing's score to the suspicion score; the
	// suspicion step rejects when the whole score reaches its reject
	// threshold, and greylists otherwise.
	DNSBLScore
)

func (a DNSBLAction) String() string {
	switch a {
	case DNSBLGreylist:
		return "greylist"
	case DNSBLMark:
		return "mark"
	case DNSBLScore:
		return "score"
	}
	return "reject"
}

// ParseDNSBLAction parses "reject", "greylist", "mark" or "score".
func ParseDNSBLAction(s string) (DNSBLAction, error) {
	for _, a := range []DNSBLAction{DNSBLReject, DNSBLGreylist, DNSBLMark, DNSBLScore} {
		if s == a.String() {
			return a, nil
		}
	}
	return 0, fmt.Errorf("dnsbl action %q: want reject, greylist, mark or score", s)
}

// DNSBL acts on clients that the DNS block lists list under the list's
// policy. Lists that fail abstain; the decision's log line names them.
type DNSBL struct {
	List   *dnsbl.List
	Action DNSBLAction
	// Code, ECode and Text make the rejection; zero values mean the
	// defaults above. Text is a template: {ADDR} (and the usual keys),
	// {DNSBL}, the zones that list the client, and {TXT}, the list's own
	// reason (its TXT record for the listing, looked up only when the
	// template asks). A zone's own reply (see dnsbl.Zone) wins over these.
	Code  int
	ECode string
	Text  string
	// Score is what a listing adds to the suspicion score in score mode,
	// for each listing zone that sets no score of its own.
	Score int
}

// Name implements Step.
func (*DNSBL) Name() string { return "dnsbl" }

// Run implements Step.
func (s *DNSBL) Run(ctx context.Context, d *Decision) (bool, error) {
	res, ok := check(ctx, s.List, d, "dnsbl")
	if !ok || !res.Listed {
		return false, nil
	}
	zones := strings.Join(res.HitZones(), ", ")
	d.Note("dnsbl", hitsNote(res.Hits))
	action := s.Action
	if d.Rule != nil && d.Rule.Action != "" {
		// rules.Actions are the words ParseDNSBLAction reads.
		action, _ = ParseDNSBLAction(d.Rule.Action)
	}
	switch action {
	case DNSBLGreylist:
		d.Note("dnsbl_action", "greylist")
		d.ForceGreylist = true
		return false, nil
	case DNSBLMark:
		// A listed client is never waved through as "not suspicious": it
		// is marked and greylisted like any unknown triplet.
		d.Note("dnsbl_action", "mark")
		d.ForceGreylist = true
		d.Headers = append(d.Headers, Header{Name: "X-RBL-Warning",
			Value: ExpandTemplate(DefaultDNSBLHeader, d.Req, 0, "DNSBL", zones)})
		return false, nil
	}
	if action == DNSBLScore {
		score := 0
		for _, h := range res.Hits {
			score += or(h.Zone.Score, s.Score)
		}
		d.Score += score
		d.Note("check_dnsbl", checks.Result{Check: "dnsbl", Score: score, Reason: strings.Join(res.HitZones(), ",")}.String())
		d.Note("dnsbl_action", "score")
		d.listed = &listing{step: s, hits: res.Hits, zones: zones}
		return false, nil
	}
	d.Verdict = s.rejection(ctx, d, res.Hits, zones)
	return true, nil
}

// listing is a DNSBL listing in score mode, kept for the suspicion step,
// which rejects when the whole score reaches its threshold.
type listing struct {
	step  *DNSBL
	hits  []dnsbl.Hit
	zones string
}

// rejection is the listing's rejection, made only when it is given (a
// {TXT} template costs a lookup).
func (l *listing) rejection(ctx context.Context, d *Decision) Verdict {
	v := l.step.rejection(ctx, d, l.hits, l.zones)
	v.Reason = "dnsbl-score"
	return v
}

// rejection is the verdict that rejects a client listed by hits.
func (s *DNSBL) rejection(ctx context.Context, d *Decision, hits []dnsbl.Hit, zones string) Verdict {
	code, ecode, text, zone := s.reply(hits)
	vars := []string{"DNSBL", zones}
	if strings.Contains(text, "{TXT}") {
		vars = append(vars, "TXT", s.txt(ctx, d, zone))
	}
	return Verdict{Action: Reject, Code: code, ECode: ecode, Reason: "dnsbl",
		Text: ExpandTemplate(text, d.Req, 0, vars...)}
}

// reply picks the rejection: the first listing zone's own parts, else the
// step's, else the defaults. zone is the listing zone the reply is about.
func (s *DNSBL) reply(hits []dnsbl.Hit) (code int, ecode, text string, zone *dnsbl.Zone) {
	code, ecode, text, zone = s.Code, s.ECode, s.Text, hits[0].Zone
	for _, h := range hits {
		z := h.Zone
		if z.Code != 0 || z.ECode != "" || z.Text != "" {
			code, ecode, text, zone = or(z.Code, code), or(z.ECode, ecode), or(z.Text, text), z
			break
		}
	}
	return or(code, DefaultDNSBLCode), or(ecode, DefaultDNSBLECode), or(text, DefaultDNSBLText), zone
}

// txt is {TXT}: zone's reason for listing the client, looked up within the
// decision's deadline; when the list gives none (or no answer in time),
// "ADDR listed in ZONE".
func (s *DNSBL) txt(ctx context.Context, d *Decision, zone *dnsbl.Zone) string {
	reason, err := s.List.TXT(ctx, d.Req.ClientAddr, zone)
	if err != nil {
		d.Note("dnsbl_txt_error", err.Error())
	}
	if reason == "" {
		reason = ExpandTemplate(DefaultDNSBLHeader, d.Req, 0, "DNSBL", zone.Name)
	}
	return reason
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// check runs list on the client, noting the lists that abstained. It
// reports false when there is nothing to look up.
func check(ctx context.Context, list *dnsbl.List, d *Decision, key string) (dnsbl.Result, bool) {
	if list == nil || !d.Req.ClientAddr.IsValid() {
		return dnsbl.Result{}, false
	}
	res := list.Check(ctx, d.Req.ClientAddr)
	if len(res.Abstained) > 0 {
		parts := make([]string, len(res.Abstained))
		for i, a := range res.Abstained {
			parts[i] = a.Zone + ": " + a.Err.Error()
		}
		d.Note(key+"_abstained", strings.Join(parts, "; "))
	}
	return res, true
}

// hitsNote writes "zone(answer,answer) zone(answer)" for the log.
func hitsNote(hits []dnsbl.Hit) string {
	var b strings.Builder
	for i, h := range hits {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h.Zone.Name)
		b.WriteByte('(')
		for j, a := range h.Answers {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(a.String())
		}
		b.WriteByte(')')
	}
	return b.String()
}
