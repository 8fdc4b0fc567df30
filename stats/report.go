package stats

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Actions as the engine names them.
const (
	ActionPass     = "pass"
	ActionGreylist = "greylist"
	ActionReject   = "reject"
)

// Period is the decisions of one period (a day, or an hour).
type Period struct {
	Start                  time.Time
	Pass, Greylist, Reject int64
	Delayed                int64 // passed after being greylisted (reason "passed")
	ByReason               map[string]int64
}

// Total is every decision of the period.
func (p Period) Total() int64 { return p.Pass + p.Greylist + p.Reject }

// Report is the decision log summed up by period.
type Report struct {
	From, To time.Time
	Step     time.Duration
	Periods  []Period // one per step from From to To, empty ones included
}

// Build sums counts into periods of step from from (inclusive) to to.
func Build(counts []Count, from, to time.Time, step time.Duration) Report {
	from = from.UTC().Truncate(step)
	r := Report{From: from, To: to, Step: step}
	for t := from; t.Before(to); t = t.Add(step) {
		r.Periods = append(r.Periods, Period{Start: t, ByReason: map[string]int64{}})
	}
	for _, c := range counts {
		i := int(c.Hour.Sub(from) / step)
		if c.Hour.Before(from) || i >= len(r.Periods) {
			continue
		}
		p := &r.Periods[i]
		switch c.Action {
		case ActionPass:
			p.Pass += c.N
			if c.Reason == "passed" {
				p.Delayed += c.N
			}
		case ActionGreylist:
			p.Greylist += c.N
		case ActionReject:
			p.Reject += c.N
		}
		p.ByReason[c.Action+"/"+c.Reason] += c.N
	}
	return r
}

// Sum is the whole report as one period.
func (r Report) Sum() Period {
	s := Period{Start: r.From, ByReason: map[string]int64{}}
	for _, p := range r.Periods {
		s.Pass += p.Pass
		s.Greylist += p.Greylist
		s.Reject += p.Reject
		s.Delayed += p.Delayed
		for k, n := range p.ByReason {
			s.ByReason[k] += n
		}
	}
	return s
}

// WriteText writes the report as tables.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	layout := "2006-01-02"
	if r.Step < 24*time.Hour {
		layout = "2006-01-02 15:04"
	}
	fmt.Fprintf(tw, "period\ttotal\tpassed\tgreylisted\trejected\tpassed after delay\tgreylisted %%\t\n")
	row := func(label string, p Period) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", label, p.Total(), p.Pass, p.Greylist, p.Reject, p.Delayed, percent(p.Greylist, p.Total()))
	}
	for _, p := range r.Periods {
		row(p.Start.Format(layout), p)
	}
	sum := r.Sum()
	row("all", sum)
	if err := tw.Flush(); err != nil {
		return err
	}
	keys := make([]string, 0, len(sum.ByReason))
	for k := range sum.ByReason {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if sum.ByReason[keys[i]] != sum.ByReason[keys[j]] {
			return sum.ByReason[keys[i]] > sum.ByReason[keys[j]]
		}
		return keys[i] < keys[j]
	})
	fmt.Fprintf(w, "\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "action\treason\tdecisions\tshare\n")
	for _, k := range keys {
		action, reason, _ := strings.Cut(k, "/")
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", action, reason, sum.ByReason[k], percent(sum.ByReason[k], sum.Total()))
	}
	return tw.Flush()
}

func percent(n, of int64) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}
