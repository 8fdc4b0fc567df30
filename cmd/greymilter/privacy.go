package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/greylist"
)

// SecretEnv is the environment variable that can hold the privacy secret,
// e.g. for MX hosts that share one PostgreSQL database.
const SecretEnv = "GREYMILTER_PRIVACY_SECRET"

// privacyFlags are --privacy and its companions. They act when the store
// is opened, once: a reload cannot change them.
type privacyFlags struct {
	on, migrate bool
	secret      string
	// existingOnly is for greymilter db: it uses the keys of a database
	// that is private already, and never makes one private (a secret file
	// and a mark that the daemon would then refuse without --privacy).
	existingOnly bool
}

func init() {
	register("Privacy", func() module { return &privacyFlags{} })
}

func (p *privacyFlags) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&p.on, "privacy", false, "store clients, senders, recipients and domains only as HMAC-SHA256 keys under a secret, so that the database reveals no address")
	fs.StringVar(&p.secret, "privacy-secret", "", "file of the privacy secret, created (mode 0600) on first start; default: the SQLite file's name + .secret; $"+SecretEnv+" wins over it")
	fs.BoolVar(&p.migrate, "privacy-migrate", false, "empty a database whose keys were made otherwise (plain, or another secret), so that --privacy (or its absence) can apply")
}

func (p *privacyFlags) check() error                      { return nil }
func (p *privacyFlags) steps(*pipeline) error             { return nil }
func (p *privacyFlags) start(context.Context, *app) error { return nil }

// privacyOf returns the privacy flags of cfg.
func privacyOf(cfg *config) *privacyFlags {
	for _, m := range cfg.modules {
		if p, ok := m.(*privacyFlags); ok {
			return p
		}
	}
	return &privacyFlags{}
}

// secretFile is where the secret of the store at dsn is kept: the flag,
// else beside an SQLite file. A database server has no "beside".
func (p *privacyFlags) secretFile(dsn string) string {
	if p.secret != "" || dsn == ":memory:" || strings.Contains(dsn, "://") {
		return p.secret
	}
	return dsn + ".secret"
}

// openStore opens the store of --db and returns it with the store the
// decisions use: the same, or under --privacy one that hashes every key
// first. The store's privacy mark must agree with the flags.
func openStore(ctx context.Context, cfg *config, logger *slog.Logger) (raw, keyed greylist.Store, err error) {
	c := &cfg.core
	privacy := privacyOf(cfg)
	open := func() (greylist.Store, error) {
		return greylist.Open(ctx, c.db, greylist.Options{Timeout: c.dbTimeout, CacheTTL: c.dbCacheTTL, AutoWhitelist: c.autoWhitelist, Log: logger, Recover: c.dbRecover, WriteTest: true})
	}
	store, err := open()
	if err != nil {
		return nil, nil, err
	}
	p, err := privacy.load(ctx, c.db, store, logger)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	err = greylist.CheckPrivacy(ctx, store, p, func() (bool, error) { return isEmpty(ctx, store) })
	if errors.Is(err, greylist.ErrPrivacyMismatch) && privacy.migrate {
		if store, err = privacy.erase(ctx, c.db, store, p, open, logger); err != nil {
			return nil, nil, err
		}
	} else if err != nil {
		store.Close()
		if errors.Is(err, greylist.ErrPrivacyMismatch) {
			return nil, nil, configError(fmt.Errorf("--db %s: %w; start with --privacy-migrate to empty it (every triplet and client is forgotten)", c.db, err))
		}
		return nil, nil, fmt.Errorf("--db %s: %w", c.db, err)
	}
	if p == nil {
		return store, store, nil
	}
	keyer := greylist.Keyer{IPv4Prefix: c.ipv4Prefix, IPv6Prefix: c.ipv6Prefix, ByHost: c.byHost}
	return store, greylist.Private(store, p, keyer), nil
}

// load returns the keying of --privacy, or nil without it. A secret file
// is created only for a store that is not private yet (or is being
// emptied): losing the secret of a private store loses its keys, and that
// is said, not papered over with a new secret.
func (p *privacyFlags) load(ctx context.Context, dsn string, store greylist.Store, logger *slog.Logger) (*greylist.Privacy, error) {
	if !p.on {
		return nil, nil
	}
	file := p.secretFile(dsn)
	var secret []byte
	if file == "" && dsn == ":memory:" && os.Getenv(SecretEnv) == "" {
		// Nothing outlives the process: a secret of its own will do.
		secret = []byte(greylist.NewSecret())
	} else {
		marked := false
		if m, ok := store.(greylist.Meta); ok {
			var err error
			if _, marked, err = m.Meta(ctx, greylist.MetaPrivacy); err != nil {
				return nil, fmt.Errorf("--db %s: %w", dsn, err)
			}
		}
		if !marked && p.existingOnly {
			return nil, configError(fmt.Errorf("--privacy: the database %s is not private (greymilter has not run on it with --privacy): leave --privacy out", dsn))
		}
		var created bool
		var err error
		create := !marked || p.migrate
		secret, created, err = greylist.LoadSecret(file, SecretEnv, create)
		if errors.Is(err, os.ErrNotExist) && !create {
			return nil, configError(fmt.Errorf("--privacy: the database %s is private but its secret %s is missing: restore the file (or set $%s), or start with --privacy-migrate to empty the database and begin with a new secret", dsn, file, SecretEnv))
		}
		if err != nil {
			return nil, configError(fmt.Errorf("--privacy: %w", err))
		}
		if created {
			logger.Info("privacy secret created; keep it with the database's backups", "file", file)
		}
	}
	priv, err := greylist.NewPrivacy(secret)
	if err != nil {
		return nil, configError(fmt.Errorf("--privacy: %w", err))
	}
	return priv, nil
}

// erase empties a store whose keys were made otherwise, marks it for p,
// and opens it again, so that nothing of the old keys stays in memory.
func (p *privacyFlags) erase(ctx context.Context, dsn string, store greylist.Store, priv *greylist.Privacy, open func() (greylist.Store, error), logger *slog.Logger) (greylist.Store, error) {
	e, ok := store.(greylist.Eraser)
	m, mok := store.(greylist.Meta)
	if !ok || !mok {
		store.Close()
		return nil, fmt.Errorf("--privacy-migrate: the store of %s cannot be emptied", dsn)
	}
	mark := ""
	if priv != nil {
		mark = priv.Fingerprint()
	}
	if err := e.Erase(ctx); err != nil {
		store.Close()
		return nil, fmt.Errorf("--privacy-migrate: %w", err)
	}
	if err := m.SetMeta(ctx, greylist.MetaPrivacy, mark); err != nil {
		store.Close()
		return nil, fmt.Errorf("--privacy-migrate: %w", err)
	}
	logger.Warn("--privacy-migrate: database emptied of every triplet and client", "db", dsn, "privacy", priv != nil)
	if err := store.Close(); err != nil {
		return nil, fmt.Errorf("--privacy-migrate: %w", err)
	}
	return open()
}

// isEmpty tells whether a store holds no triplet and no client.
func isEmpty(ctx context.Context, store greylist.Store) (bool, error) {
	s, ok := store.(greylist.Summarizer)
	if !ok {
		return false, errors.New("this store cannot tell whether it is empty")
	}
	sum, err := s.Summary(ctx, 0)
	if err != nil {
		return false, err
	}
	return sum.Triplets == 0 && sum.Clients == 0, nil
}
