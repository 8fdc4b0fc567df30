package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/internal/sockaddr"
	"github.com/greymilter/greymilter/policyd"
)

// The Postfix policy server: a second front end on the same engine and
// store as the milter, off unless --policy-socket is given.
func init() {
	register("Postfix policy server", func() module { return &policyFlags{} })
}

type policyFlags struct {
	socket          string
	mode            modeValue
	idleTimeout     time.Duration
	closeAfterReply bool
	group           string

	// set by listen
	ln   net.Listener
	addr sockaddr.Addr
}

func (f *policyFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.socket, "policy-socket", "", "also serve the Postfix policy protocol (check_policy_service) here: inet:HOST:PORT, inet6:[ADDR]:PORT, unix:PATH (also inet:PORT@HOST, local:PATH)")
	f.mode = 0o660
	fs.Var(&f.mode, "policy-socket-mode", "permissions of a unix policy socket (postgrey's default is 0666)")
	fs.Var(newDuration(&f.idleTimeout, policyd.DefaultIdleTimeout), "policy-idle-timeout", "close a policy connection when no whole request came for this long; keep it above Postfix's smtpd_policy_service_max_idle (300s)")
	fs.StringVar(&f.group, "policy-socket-group", "", "group of a unix policy socket, e.g. postfix (name or number)")
	fs.BoolVar(&f.closeAfterReply, "policy-close-after-reply", false, "close the policy connection after each answer, for Exim's ${readsocket} (postgrey's --exim)")
}

func (f *policyFlags) check() error {
	var errs []error
	if f.socket != "" {
		if _, err := sockaddr.Parse(f.socket); err != nil {
			errs = append(errs, flagErrorf("policy-socket", "--policy-socket: %w", err))
		}
	}
	if f.idleTimeout <= 0 {
		errs = append(errs, flagErrorf("policy-idle-timeout", "--policy-idle-timeout: must be more than 0"))
	}
	return errors.Join(errs...)
}

func (f *policyFlags) steps(*pipeline) error { return nil }

// listen binds the policy socket, before privileges are dropped.
func (f *policyFlags) listen(ctx context.Context, a *app) error {
	if f.socket == "" {
		return nil
	}
	addr, _ := sockaddr.Parse(f.socket)
	perm, err := a.socketPerm(f.mode, f.group, "--policy-socket-group")
	if err != nil {
		return err
	}
	ln, err := sockaddr.ListenPerm(ctx, addr, perm)
	if err != nil {
		return fmt.Errorf("--policy-socket: %w", err)
	}
	if addr.Network != "unix" {
		addr.Address = ln.Addr().String() // the real port when asked for port 0
	}
	a.onClose(func() error { ln.Close(); return nil })
	f.ln, f.addr = a.limit(ln, "policy"), addr
	return nil
}

func (f *policyFlags) start(ctx context.Context, a *app) error {
	if f.ln == nil {
		return nil
	}
	ln, addr := f.ln, f.addr
	log := a.logs.component("policy")
	srv := policyd.New(policyd.Config{
		Decider:         a.engine,
		Logger:          log,
		IdleTimeout:     f.idleTimeout,
		CloseAfterReply: f.closeAfterReply,
	})
	a.addService(service{
		name:     "policy " + addr.String(),
		serve:    func() error { return ignoreClosed(srv.Serve(context.Background(), ln)) },
		shutdown: srv.Shutdown,
	})
	log.Log(ctx, levelNotice, "policy server: in Postfix's main.cf, add to smtpd_recipient_restrictions after reject_unauth_destination",
		"restriction", "check_policy_service "+postfixSocket(addr))
	return nil
}
