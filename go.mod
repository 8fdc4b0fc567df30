module github.com/greymilter/greymilter

go 1.26.8

require (
	blitiri.com.ar/go/spf v1.6.0
	github.com/emersion/go-milter v0.5.0
	github.com/hashicorp/golang-lru/v2 v2.0.7
	github.com/jackc/pgx/v5 v5.13.0
	github.com/mattn/go-sqlite3 v1.14.53
	github.com/miekg/dns v1.1.73
	github.com/spf13/pflag v1.1.0
	golang.org/x/image v0.48.0
	golang.org/x/net v0.62.0
)

require (
	github.com/emersion/go-message v0.18.2 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
