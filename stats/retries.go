package stats

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/greymilter/greymilter/greylist"
)

// Retries is how greylisted triplets came back (greylist.RetryReporter).
type Retries = greylist.Retries

// classLabel names class i of r.Passed: "≤ 5m", "> 48h".
func classLabel(r Retries, i int) string {
	if i == len(r.Bounds) {
		return "> " + shortDuration(r.Bounds[len(r.Bounds)-1])
	}
	return "≤ " + shortDuration(r.Bounds[i])
}

// shortDuration writes d the way people say it: 5m, 1h30m, 48h.
func shortDuration(d time.Duration) string {
	s := d.String()
	for _, suffix := range []string{"m0s", "h0m"} {
		if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
			s = s[:len(s)-len(suffix)+1]
		}
	}
	return s
}

// WriteRetries writes the distribution of real delays and the
// never-retried share.
func WriteRetries(w io.Writer, r Retries) error {
	total := r.PassedTotal()
	fmt.Fprintf(w, "\nreal retry delay of the %d triplets that passed (first attempt to the retry that passed):\n", total)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "delay\ttriplets\tshare\tcumulative\t\n")
	var cum int64
	for i, n := range r.Passed {
		cum += n
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t\n", classLabel(r, i), n, percent(n, total), percent(cum, total))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	layout := "2006-01-02 15:04"
	share := "-"
	if s, ok := r.NeverRetriedShare(); ok {
		share = fmt.Sprintf("%.1f%%", 100*s)
	}
	_, err := fmt.Fprintf(w, "never retried: %s (%d of the %d triplets greylisted from %s to %s UTC)\n",
		share, r.NeverRetried, r.Greylisted, r.From.UTC().Format(layout), r.To.UTC().Format(layout))
	return err
}
