package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/internal/control"
)

// explain is `greymilter db explain`: the running daemon judges a mail as
// it would now, read-only, and says what each step found.
func (c *dbCommand) explain(fs *pflag.FlagSet, args []string) int {
	var er control.ExplainRequest
	fs.StringVar(&er.Client, "client", "", "the SMTP client's address")
	fs.StringVar(&er.Name, "name", "", "its verified reverse name (none: unknown)")
	fs.StringVar(&er.Helo, "helo", "", "its HELO name")
	fs.StringVar(&er.Sender, "sender", "", "envelope sender (empty: the null sender)")
	fs.StringVar(&er.Recipient, "recipient", "", "envelope recipient")
	asJSON := fs.Bool("json", false, "the explanation as JSON")
	if ok, st := c.parse(fs, args, 0); !ok {
		return st
	}
	if er.Client == "" || er.Recipient == "" {
		return c.fail(configError(errors.New("--client and --recipient are needed")))
	}
	ctx := context.Background()
	if err := c.connect(ctx, greylist.DefaultRules); err != nil {
		return c.fail(err)
	}
	done, err := c.do(ctx, control.Request{Cmd: "explain", Explain: &er}, nil)
	if err != nil {
		return c.fail(err)
	}
	x := done.Explanation
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(x); err != nil {
			return c.fail(err)
		}
		return 0
	}
	writeExplanation(c.stdout, x)
	return 0
}

func writeExplanation(w io.Writer, x *control.Explanation) {
	fmt.Fprintf(w, "verdict: %s (step %s, reason %s)", x.Action, x.Step, x.Reason)
	if x.Reply != "" {
		fmt.Fprintf(w, ": %s", x.Reply)
	}
	fmt.Fprintln(w)
	if x.DryRun && x.Action != "pass" {
		fmt.Fprintln(w, "(greymilter runs with --dry-run: the mail would pass all the same)")
	}
	if x.Error != "" {
		fmt.Fprintf(w, "internal error, answered per --on-error: %s\n", x.Error)
	}
	fmt.Fprintln(w)
	for i, s := range x.Steps {
		mark := ""
		if s.Settled {
			mark = "  <- decides"
		}
		fmt.Fprintf(w, "%d. %s%s\n", i+1, s.Step, mark)
		if len(s.Notes) == 0 && s.Error == "" {
			fmt.Fprintln(w, "     nothing found")
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "     %s = %s\n", n.Key, n.Value)
		}
		if s.Error != "" {
			fmt.Fprintf(w, "     error: %s\n", s.Error)
		}
	}
}
