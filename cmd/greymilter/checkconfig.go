package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/greymilter/greymilter/engine"
)

// runCheckConfig is `greymilter check-config [flags]`: the daemon's flags
// and config file are read and checked as at start, with every list,
// pattern file and DNS list spec, but no socket is bound and the database
// is not opened. Deploy scripts and systemd's ExecReload= run it.
func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	cfg := newConfig()
	if code, done := cfg.parseArgs(args, stdout, stderr); done {
		return code
	}
	return checkConfig(cfg, stdout)
}

// checkConfig prints "ok" and returns 0, or prints every problem, one a
// line, FILE:LINE first where a file is to blame, and returns 2.
func checkConfig(cfg *config, w io.Writer) int {
	errs := cfg.load()
	files := flatten(checkPipeline(cfg))
	if len(errs) > 0 {
		// The files the flags name are read even when some flag is
		// wrong, so that a bad list shows up beside a bad option; what
		// the pipeline says of the flags was said already.
		for _, err := range files {
			var fe *flagError
			if !errors.As(err, &fe) {
				errs = append(errs, err)
			}
		}
	} else {
		errs = files
	}
	if len(errs) == 0 {
		fmt.Fprintln(w, "ok")
		return 0
	}
	for _, err := range errs {
		fmt.Fprintln(w, cfg.describe(err))
	}
	return exitUsage
}

// checkPipeline builds the pipeline of a checked configuration without a
// store and throws it away. The resolver sends nothing until asked.
func checkPipeline(cfg *config) error {
	logs := &logging{root: slog.New(slog.DiscardHandler)}
	res, err := cfg.resolver.build(engine.SystemClock{}, logs.root)
	if err != nil {
		return err
	}
	_, err = newPipeline(cfg, logs, res, nil)
	return err
}
