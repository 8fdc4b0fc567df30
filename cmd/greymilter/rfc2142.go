package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/engine"
)

// Mail to postmaster@ and abuse@ (RFC 2142) passes without greylisting or
// DNS list checks unless turned off; the administrator's blacklists still
// apply.
func init() {
	var off bool
	register(module{
		name: "rfc2142",
		addFlags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&off, "no-postmaster-exemption", false, "greylist and check against DNS lists the mail to postmaster@ and abuse@ too (RFC 2142: by default it passes, so that anyone can report a problem)")
		},
		build: func(_ context.Context, a *app) error {
			if !off {
				a.addStep(slotRoles, &engine.RFC2142{})
			}
			return nil
		},
	})
}
