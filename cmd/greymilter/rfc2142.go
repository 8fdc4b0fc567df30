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
	register("Postmaster and abuse", func() module { return &rfc2142Flags{} })
}

type rfc2142Flags struct{ off bool }

func (f *rfc2142Flags) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.off, "no-postmaster-exemption", false, "greylist and check against DNS lists the mail to postmaster@ and abuse@ too (RFC 2142: by default it passes, so that anyone can report a problem)")
	reloadable(fs, "no-postmaster-exemption")
}

func (f *rfc2142Flags) check() error { return nil }

func (f *rfc2142Flags) steps(p *pipeline) error {
	if !f.off {
		p.add(slotRoles, &engine.RFC2142{})
	}
	return nil
}

func (f *rfc2142Flags) start(context.Context, *app) error { return nil }
