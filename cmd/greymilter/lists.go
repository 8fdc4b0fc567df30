package main

import (
	"context"
	"errors"
	"strings"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/engine"
	"github.com/greymilter/greymilter/lists"
)

// The white and black list files: the "lists" step of the pipeline, read
// at start (a bad line exits 2 naming FILE:LINE) and again on SIGHUP (a bad
// line keeps the old configuration and is logged).
func init() {
	register("List files", func() module { return &listFlags{} })
}

type listFlags struct {
	cfg           lists.Config
	noDefault     bool
	blacklistText string
}

func (f *listFlags) addFlags(fs *pflag.FlagSet) {
	files := func(p *[]string, name, usage string, aliases ...string) {
		fs.Var(fileList{p}, name, usage+" (repeatable)")
		for _, a := range aliases {
			fs.Var(fileList{p}, a, "same as --"+name)
		}
	}
	files(&f.cfg.WhitelistClients, "whitelist-clients", "clients listed in this file (addresses, networks, names, /regex/; postgrey's format) are not greylisted", "custom-wl")
	files(&f.cfg.WhitelistRecipients, "whitelist-recipients", "recipients listed in this file (user@domain, user@, domain, /regex/) are not greylisted")
	files(&f.cfg.WhitelistSenders, "whitelist-senders", "senders listed in this file are not greylisted")
	files(&f.cfg.BlacklistClients, "blacklist-clients", "clients listed in this file are rejected with 550 5.7.1", "custom-bl")
	files(&f.cfg.BlacklistSenders, "blacklist-senders", "senders listed in this file are rejected with 550 5.7.1")
	fs.BoolVar(&f.noDefault, "no-default-whitelist", false, "do not use the shipped client whitelist of big providers that retry from address pools")
	fs.StringVar(&f.blacklistText, "blacklist-text", engine.DefaultBlacklistText, "reply to a blacklisted client or sender; {CLIENT} {SENDER} {RECIPIENT} are replaced")
	reloadable(fs, "whitelist-clients", "custom-wl", "whitelist-recipients", "whitelist-senders", "blacklist-clients", "custom-bl", "blacklist-senders",
		"no-default-whitelist", "blacklist-text")
}

func (f *listFlags) check() error { return nil }

func (f *listFlags) steps(p *pipeline) error {
	f.cfg.DefaultWhitelist = !f.noDefault
	set, err := lists.Load(f.cfg)
	if err != nil {
		return err
	}
	p.logs.component("lists").Info("lists loaded", "rules", set.Rules(), "default_whitelist", f.cfg.DefaultWhitelist)
	p.add(slotLists, &engine.Lists{Set: set, BlacklistText: f.blacklistText})
	return nil
}

func (f *listFlags) start(context.Context, *app) error { return nil }

// fileList is a repeatable flag of file names. Unlike pflag's string
// slices it never splits on commas, and an alias shares the list of the
// flag it stands for.
type fileList struct{ files *[]string }

func (f fileList) Set(s string) error {
	if s == "" {
		return errors.New("empty file name")
	}
	*f.files = append(*f.files, s)
	return nil
}

func (f fileList) Type() string { return "file" }

func (f fileList) String() string { return strings.Join(*f.files, ",") }
