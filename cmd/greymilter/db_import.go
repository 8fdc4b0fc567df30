package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver, for sqlgrey's PostgreSQL
	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/greylist"
	"github.com/greymilter/greymilter/greylist/pgstore"
	"github.com/greymilter/greymilter/internal/peerimport"
)

// peerFlags are the flags of the imports from other greylisting tools:
// how greymilter keys clients, so that imported triplets match the next
// mail's.
func (c *dbCommand) peerFlags(fs *pflag.FlagSet) *peerimport.Options {
	o := &peerimport.Options{Keyer: greylist.DefaultKeyer}
	fs.IntVar(&o.Keyer.IPv4Prefix, "ipv4-prefix", greylist.DefaultKeyer.IPv4Prefix, "greymilter's --ipv4-prefix")
	fs.IntVar(&o.Keyer.IPv6Prefix, "ipv6-prefix", greylist.DefaultKeyer.IPv6Prefix, "greymilter's --ipv6-prefix")
	fs.BoolVar(&o.Keyer.ByHost, "lookup-by-host", false, "greymilter's --lookup-by-host")
	fs.IntVar(&o.AutoWhitelist, "auto-whitelist-clients", 5, "greymilter's --auto-whitelist-clients")
	return o
}

// importPostgrey is `greymilter db import-postgrey DBDIR`.
func (c *dbCommand) importPostgrey(fs *pflag.FlagSet, args []string) int {
	o := c.peerFlags(fs)
	fs.Var(newDuration(&o.Delay, 300*time.Second), "delay", "postgrey's --delay: a triplet whose first and last times are this far apart passed")
	if ok, st := c.parse(fs, args, 1); !ok {
		return st
	}
	if fs.NArg() != 1 {
		return c.fail(configError(fmt.Errorf("give postgrey's --dbdir (or the postgrey.db in it)")))
	}
	im, rep, err := peerimport.Postgrey(context.Background(), fs.Arg(0), *o)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stderr, "read from postgrey: %s\n", rep)
	return c.store(im)
}

// importSQLgrey is `greymilter db import-sqlgrey DSN`.
func (c *dbCommand) importSQLgrey(fs *pflag.FlagSet, args []string) int {
	o := c.peerFlags(fs)
	if ok, st := c.parse(fs, args, 1); !ok {
		return st
	}
	if fs.NArg() != 1 {
		return c.fail(configError(fmt.Errorf("give sqlgrey's database: its SQLite file (sqlite:PATH or PATH) or a postgres:// URL")))
	}
	dsn := fs.Arg(0)
	var db *sql.DB
	var err error
	switch {
	case pgstore.IsDSN(dsn):
		db, err = sql.Open("pgx", dsn)
	case strings.Contains(dsn, "://"):
		return c.fail(configError(fmt.Errorf("%s: sqlgrey's databases are read from SQLite (sqlite:PATH or PATH) or PostgreSQL (postgres://...); export a MySQL one to either first", dsn)))
	default:
		db, err = sql.Open("sqlite3", "file:"+strings.TrimPrefix(dsn, "sqlite:")+"?mode=ro")
	}
	if err != nil {
		return c.fail(err)
	}
	defer db.Close()
	im, rep, err := peerimport.SQLgrey(context.Background(), db, *o)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stderr, "read from sqlgrey: %s\n", rep)
	return c.store(im)
}
