#!/usr/bin/env bash
# bench/run.sh (make bench): greymilter's performance against its ceilings
# and against postgrey, on this machine, in one table.
#
# Builds greymilter, greyload and the null servers; starts each server on
# loopback with a fresh database; runs the same seeded greyload stream
# (half first-time triplets, half retries after the delay) against it at
# each concurrency; prints decisions/s, p50, p99 and RSS with ratios to the
# null servers. Then the large-store figures: a store of a million
# triplets (start-up, RSS, rate) and a purge of half of them under load.
#
# Settings (environment):
#   BENCH_DURATION     measured seconds per run (default 10)
#   BENCH_CONCURRENCY  concurrencies (default "1 8 32")
#   BENCH_DELAY        greylisting delay of the servers, whole seconds (default 1)
#   BENCH_SEED         workload seed (default 1)
#   BENCH_NEW_SHARE    share of first-time triplets (default 0.5)
#   BENCH_MILLION      triplets of the large store, 0 to skip (default 1000000)
#   BENCH_PROFILE      1: one more greymilter run with CPU and allocation profiles (default 1)
#   BENCH_OUT          where logs, results and profiles go (default a new /tmp dir)
#   MILTER_GREYLIST    milter-greylist binary for its rows (default: the one on
#                      PATH, else /usr/local/sbin/milter-greylist; rows skipped
#                      when there is none; docs/greyload.md says how to build it)
#   BENCH_CACHE        where the seeded large store is kept between runs
#                      (default ~/.cache/greymilter-bench)
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${BENCH_DURATION:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 8 32"}
DELAY=${BENCH_DELAY:-1}
SEED=${BENCH_SEED:-1}
NEW_SHARE=${BENCH_NEW_SHARE:-0.5}
MILLION=${BENCH_MILLION:-1000000}
PROFILE=${BENCH_PROFILE:-1}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/greymilter-bench.XXXXXX)}
CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/greymilter-bench}
MARGIN=1   # seconds between the delay's end and a retry: postgrey counts whole seconds
RESULTS=$OUT/results.jsonl
BIN=$OUT/bin

for tool in go jq ss; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is needed" >&2; exit 1; }
done
mkdir -p "$OUT" "$BIN" "$CACHE"
# postgrey runs as its own user and keeps its database under $OUT.
chmod 755 "$OUT"
: >"$RESULTS"
started=$SECONDS
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: output in $OUT"

echo "bench: building"
go build -o "$BIN/" ./cmd/greymilter ./cmd/greyload ./bench/nullmilter ./bench/nullpolicy ./bench/nulldns ./bench/seed

# ---- processes -------------------------------------------------------

SERVER_PID=
SERVER_STARTUP_MS=

# free_port prints a TCP port nobody listens on at 127.0.0.1.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 40000))
		if [ -z "$(ss -Htan "sport = :$p")" ]; then
			echo "$p"
			return
		fi
	done
	echo "bench: no free port" >&2
	exit 1
}

now_ms() { date +%s%3N; }

# start NAME PORT CMD...: starts a server with its output in $OUT/NAME.log
# and waits until it accepts connections on PORT; sets SERVER_PID and
# SERVER_STARTUP_MS (from exec to the first accepted connection).
start() {
	local name=$1 port=$2
	shift 2
	local t0
	t0=$(now_ms)
	"$@" >>"$OUT/$name.log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 2000); do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			echo "bench: $name exited at start; its log:" >&2
			tail -20 "$OUT/$name.log" >&2
			exit 1
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			SERVER_STARTUP_MS=$(($(now_ms) - t0))
			return
		fi
		sleep 0.01
	done
	echo "bench: $name does not listen on $port after 20s" >&2
	exit 1
}

# stop ends the server started last: TERM, then KILL after 15 seconds.
stop() {
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}
DNS_PID=
PG_DATA=
cleanup() {
	stop
	[ -z "$DNS_PID" ] || kill "$DNS_PID" 2>/dev/null || true
	[ -z "$PG_DATA" ] || pg_as pg_ctl stop -w -m fast -D "$PG_DATA" >/dev/null 2>&1 || true
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# busy_ticks: CPU ticks the whole machine spent busy; proc_ticks PID: those
# of one process (and its children that ended). With greyload's own CPU
# time they tell how much else ran during a run.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
proc_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# load NAME PROTO ADDR EXPECT C [EXTRA...]: one greyload run against the
# server started last; appends its JSON line, with the server's name and
# RSS, to $RESULTS and echoes a short summary.
load() {
	local name=$1 proto=$2 addr=$3 expect=$4 c=$5
	shift 5
	local line busy0 server0 t0 busy1 server1 t1
	busy0=$(busy_ticks)
	server0=$(proc_ticks "$SERVER_PID")
	t0=$(now_ms)
	line=$("$BIN/greyload" --"$proto" "$addr" --expect "$expect" -c "$c" \
		-n 1000000000 --max-time "$((DELAY + MARGIN + DURATION))s" \
		--delay "${DELAY}s" --retry-margin "${MARGIN}s" --new-share "$NEW_SHARE" --seed "$SEED" \
		--json "$@" 2>>"$OUT/greyload.log") || true
	busy1=$(busy_ticks)
	server1=$(proc_ticks "$SERVER_PID")
	t1=$(now_ms)
	if [ -z "$line" ]; then
		echo "bench: greyload against $name gave no result; see $OUT/greyload.log" >&2
		exit 1
	fi
	# Cores used by the server, and by everything but the server and
	# greyload, over the run.
	jq -c --arg server "$name" --argjson rss "$(rss_kb "$SERVER_PID")" \
		--argjson startup "$SERVER_STARTUP_MS" \
		--argjson busy "$(((busy1 - busy0)))" --argjson srv "$((server1 - server0))" \
		--argjson hz "$HZ" --argjson wall "$((t1 - t0))" \
		'. + {server: $server, rss_kb: $rss, startup_ms: $startup,
		      server_cores: ($srv / $hz / ($wall / 1000) * 100 | round / 100),
		      client_cores: (.cpu_s / ($wall / 1000) * 100 | round / 100),
		      other_cores: ([($busy - $srv) / $hz - .cpu_s, 0] | max / ($wall / 1000) * 100 | round / 100)}' <<<"$line" |
		tee -a "$RESULTS" |
		jq -r '"  \(.server) c=\(.concurrency): \(.decisions_per_s|round)/s p50 \(.p50_ms) p99 \(.p99_ms) ms, rss \(.rss_kb/1024|round) MB, errors \(.errors), mismatches \(.mismatches), cores: server \(.server_cores) greyload \(.client_cores) other \(.other_cores)"'
}

fresh_dir() {
	local d
	d=$(mktemp -d "$OUT/db.XXXXXX")
	echo "$d"
}

# greymilter's SPF and reverse-DNS lookups go to a DNS server on loopback
# that knows no name, as a local caching resolver would answer for the
# workload's made-up domains: no query leaves the machine.
"$BIN/nulldns" >"$OUT/nulldns.addr" 2>"$OUT/nulldns.log" &
DNS_PID=$!
for _ in $(seq 500); do
	[ -s "$OUT/nulldns.addr" ] && break
	sleep 0.01
done
DNS=$(head -1 "$OUT/nulldns.addr")
[ -n "$DNS" ] || { echo "bench: nulldns did not start" >&2; exit 1; }

# milter-greylist 4.6.2 (C, libmilter, state in memory, dumped to a file
# every minute) with the same delay, greylisting every client by its /24
# (/64 for IPv6) as greymilter does: no SPF, no header added. noauth:
# greyload sends an empty {auth_authen} macro, which milter-greylist would
# take for an authenticated client and let through.
MILTER_GREYLIST=${MILTER_GREYLIST:-$(command -v milter-greylist || true)}
if [ -z "$MILTER_GREYLIST" ] && [ -x /usr/local/sbin/milter-greylist ]; then
	MILTER_GREYLIST=/usr/local/sbin/milter-greylist
fi
milter_greylist_conf() {
	local dir=$1 port=$2
	cat <<-EOF
		socket "inet:$port@127.0.0.1"
		pidfile "$dir/milter-greylist.pid"
		dumpfile "$dir/greylist.db"
		dumpfreq 1m
		quiet
		nospf
		noauth
		report none
		subnetmatch /24
		subnetmatch6 /64
		racl greylist default delay ${DELAY}s autowhite 1d
	EOF
}

greymilter_flags=(--delay "${DELAY}s" --auto-whitelist-clients 0 --dns "$DNS" --allow-root)

# ---- PostgreSQL ------------------------------------------------------

# A PostgreSQL cluster of the script's own on a loopback port, with the
# server's default settings (durable commits), for the shared-store rows;
# each run gets a fresh database. Needs Debian's postgresql package and
# root (the server runs as postgres).
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
PG_PORT=
pg_as() {
	local prog=$1
	shift
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$PG_BIN/$prog" "$@"
	else
		"$PG_BIN/$prog" "$@"
	fi
}
if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && { [ "$(id -u)" != 0 ] || id postgres >/dev/null 2>&1; }; then
	mkdir -p "$OUT/pg"
	[ "$(id -u)" = 0 ] && chown postgres "$OUT/pg"
	PG_PORT=$(free_port)
	pg_as initdb -D "$OUT/pg/data" -U postgres --auth=trust -E UTF8 --locale=C --no-instructions >"$OUT/pg-initdb.log" 2>&1
	pg_as pg_ctl start -w -D "$OUT/pg/data" -l "$OUT/pg/server.log" \
		-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$OUT/pg -c max_connections=200" >/dev/null
	PG_DATA=$OUT/pg/data
else
	echo "bench: no PostgreSQL server (apt-get install postgresql; run as root): no PostgreSQL rows"
fi
PG_DB_SEQ=0
PG_URL=
# pg_fresh_db creates a new, empty database and sets PG_URL to its URL
# (not in a subshell: the sequence must move on).
pg_fresh_db() {
	PG_DB_SEQ=$((PG_DB_SEQ + 1))
	pg_as createdb -h 127.0.0.1 -p "$PG_PORT" -U postgres "bench$PG_DB_SEQ"
	PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/bench$PG_DB_SEQ?sslmode=disable"
}

# ---- the table -------------------------------------------------------

for c in $CONCURRENCY; do
	echo "bench: concurrency $c"

	p=$(free_port)
	start nullmilter "$p" "$BIN/nullmilter" -s "inet:127.0.0.1:$p"
	load nullmilter milter "inet:127.0.0.1:$p" pass "$c"
	stop

	# The same null milter behind greymilter's connection wrapper (buffered
	# reads, no answers at connect, HELO and MAIL): what the wrapper gives
	# or costs, apart from greymilter's engine. greymilter's "of wrapped
	# null" is its engine's share, on the same protocol. greyload times
	# the RCPT's round trip: with no answers at connect, HELO and MAIL, the
	# RCPT's wait also covers the server's work on those three, so
	# greymilter's milter latencies compare with the wrapped null's.
	p=$(free_port)
	start nullmilter-wrapped "$p" "$BIN/nullmilter" --wrapped -s "inet:127.0.0.1:$p"
	load nullmilter-wrapped milter "inet:127.0.0.1:$p" pass "$c"
	stop

	for db in file memory; do
		d=$(fresh_dir)
		path=$d/greymilter.db
		[ "$db" = memory ] && path=:memory:
		p=$(free_port)
		start "greymilter-$db" "$p" "$BIN/greymilter" -s "inet:127.0.0.1:$p" --db "$path" "${greymilter_flags[@]}"
		load "greymilter-$db" milter "inet:127.0.0.1:$p" greylist "$c"
		stop
	done

	if [ -n "$MILTER_GREYLIST" ]; then
		d=$(fresh_dir)
		p=$(free_port)
		milter_greylist_conf "$d" "$p" >"$d/greylist.conf"
		start milter-greylist "$p" "$MILTER_GREYLIST" -D -f "$d/greylist.conf"
		load milter-greylist milter "inet:127.0.0.1:$p" greylist "$c"
		stop
	elif [ "$c" = "${CONCURRENCY%% *}" ]; then
		echo "  (milter-greylist is not installed: no milter-greylist row; docs/greyload.md says how to build it)"
	fi

	p=$(free_port)
	start nullpolicy "$p" "$BIN/nullpolicy" -s "inet:127.0.0.1:$p"
	load nullpolicy policy "inet:127.0.0.1:$p" pass "$c"
	stop

	if "$BIN/greymilter" --help 2>&1 | grep -q -- --policy-socket; then
		d=$(fresh_dir)
		p=$(free_port)
		pp=$(free_port)
		start greymilter-file "$pp" "$BIN/greymilter" -s "inet:127.0.0.1:$p" --policy-socket "inet:127.0.0.1:$pp" --db "$d/greymilter.db" "${greymilter_flags[@]}"
		load greymilter-file policy "inet:127.0.0.1:$pp" greylist "$c"
		stop
	else
		echo "  (greymilter has no --policy-socket yet: no greymilter policy row)"
	fi

	if [ -n "$PG_PORT" ]; then
		p=$(free_port)
		pp=$(free_port)
		pg_fresh_db
		start greymilter-pg "$pp" "$BIN/greymilter" -s "inet:127.0.0.1:$p" --policy-socket "inet:127.0.0.1:$pp" --db "$PG_URL" "${greymilter_flags[@]}"
		load greymilter-pg milter "inet:127.0.0.1:$p" greylist "$c"
		stop
		p=$(free_port)
		pp=$(free_port)
		pg_fresh_db
		start greymilter-pg "$pp" "$BIN/greymilter" -s "inet:127.0.0.1:$p" --policy-socket "inet:127.0.0.1:$pp" --db "$PG_URL" "${greymilter_flags[@]}"
		load greymilter-pg policy "inet:127.0.0.1:$pp" greylist "$c"
		stop
	fi

	if command -v postgrey >/dev/null || [ -x /usr/sbin/postgrey ]; then
		d=$(fresh_dir)
		p=$(free_port)
		as=()
		if [ "$(id -u)" = 0 ]; then
			# As root postgrey drops to its own user, which must own the database.
			chown postgrey:postgrey "$d"
			as=(--user=postgrey --group=postgrey)
		fi
		start postgrey "$p" env PATH="$PATH:/usr/sbin" postgrey --inet="127.0.0.1:$p" --dbdir="$d" \
			--delay="$DELAY" --auto-whitelist-clients=0 "${as[@]}"
		load postgrey policy "inet:127.0.0.1:$p" greylist "$c"
		stop
	else
		echo "  (postgrey is not installed: no postgrey row; apt-get install postgrey)"
	fi
done

# ---- a million triplets ---------------------------------------------

million_lines=()
if [ "$MILLION" -gt 0 ]; then
	c=8
	# The seeded store is kept per schema: a store of an older schema
	# would be upgraded at every start, and its start-up time with it.
	seeded=$CACHE/store-$MILLION-$(sha1sum greylist/sqlitestore/schema.go | cut -c1-12).db
	if [ ! -s "$seeded" ]; then
		echo "bench: seeding $MILLION triplets (kept in $seeded for the next runs)"
		rm -f "$CACHE/store-$MILLION".db* "$CACHE/store-$MILLION"-*.db*
		"$BIN/seed" --db "$seeded.tmp" --live $((MILLION / 2)) --expired $((MILLION - MILLION / 2))
		mv "$seeded.tmp" "$seeded"
	fi

	# The empty-store reference runs right before, so that both see the
	# same machine.
	echo "bench: greymilter on an empty store, then on a store of $MILLION triplets, concurrency $c"
	d=$(fresh_dir)
	p=$(free_port)
	start greymilter-empty "$p" "$BIN/greymilter" -s "inet:127.0.0.1:$p" --db "$d/greymilter.db" --purge-interval 1h "${greymilter_flags[@]}"
	load greymilter-empty milter "inet:127.0.0.1:$p" greylist "$c"
	stop

	d=$(fresh_dir)
	cp "$seeded" "$d/greymilter.db"
	p=$(free_port)
	start greymilter-million "$p" "$BIN/greymilter" -s "inet:127.0.0.1:$p" --db "$d/greymilter.db" --purge-interval 1h "${greymilter_flags[@]}"
	load greymilter-million milter "inet:127.0.0.1:$p" greylist "$c"
	stop

	echo "bench: purge of $((MILLION - MILLION / 2)) expired triplets under load, concurrency $c"
	d=$(fresh_dir)
	cp "$seeded" "$d/greymilter.db"
	p=$(free_port)
	# The first purge comes after the warm-up, in the measured phase.
	purge_after=$((DELAY + MARGIN + 2))
	start greymilter-purge "$p" "$BIN/greymilter" -s "inet:127.0.0.1:$p" --db "$d/greymilter.db" --purge-interval "${purge_after}s" "${greymilter_flags[@]}"
	load greymilter-purge milter "inet:127.0.0.1:$p" greylist "$c"
	stop
	purge_line=$(grep -m1 'msg=purged' "$OUT/greymilter-purge.log" || echo "no purge logged")
fi

# ---- profiles --------------------------------------------------------

if [ "$PROFILE" = 1 ]; then
	c=32
	echo "bench: profiling greymilter (file database, milter, concurrency $c)"
	d=$(fresh_dir)
	p=$(free_port)
	pp=$(free_port)
	start greymilter-profiled "$p" "$BIN/greymilter" -s "inet:127.0.0.1:$p" --db "$d/greymilter.db" --pprof-listen "127.0.0.1:$pp" "${greymilter_flags[@]}"
	secs=$((DURATION > 3 ? DURATION - 2 : 1))
	(sleep $((DELAY + MARGIN + 1)) && curl -sf -o "$OUT/cpu.pprof" "http://127.0.0.1:$pp/debug/pprof/profile?seconds=$secs") &
	prof=$!
	load greymilter-profiled milter "inet:127.0.0.1:$p" greylist "$c" >/dev/null
	wait "$prof" || echo "  (no CPU profile)"
	curl -sf -o "$OUT/allocs.pprof" "http://127.0.0.1:$pp/debug/pprof/allocs" || echo "  (no allocation profile)"
	stop
	for kind in cpu allocs; do
		[ -s "$OUT/$kind.pprof" ] || continue
		extra=()
		[ $kind = allocs ] && extra=(-sample_index=alloc_space)
		go tool pprof -top -nodecount=40 "${extra[@]}" "$BIN/greymilter" "$OUT/$kind.pprof" >"$OUT/$kind.top.txt" 2>/dev/null || true
		go tool pprof -top -cum -nodecount=60 "${extra[@]}" "$BIN/greymilter" "$OUT/$kind.pprof" >"$OUT/$kind.cum.txt" 2>/dev/null || true
	done
fi

# ---- report ----------------------------------------------------------

echo
echo "greymilter benchmark: $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ), ${DURATION}s per run, delay ${DELAY}s, ${NEW_SHARE} first-time, seed $SEED"
echo "load average at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (greyload and the server take about 2; more means something else ran)"
echo "ratios: decisions/s and p99 against the null server of the same protocol at the same concurrency ('of wrapped null': against the null milter behind greymilter's connection wrapper); 'x peer': decisions/s over postgrey's (policy) or milter-greylist's (milter)"
echo "cores: CPU used during the run by the server, by greyload, and by anything else (above 0.1 the row was disturbed)"
echo
jq -r -s '
	def null_of($r): map(select(.server == "null\($r.proto)" and .concurrency == $r.concurrency)) | first;
	def wrapped_of($r): map(select(.server == "nullmilter-wrapped" and .concurrency == $r.concurrency)) | first;
	def peer_of($r): map(select(.server == (if $r.proto == "policy" then "postgrey" else "milter-greylist" end) and .concurrency == $r.concurrency)) | first;
	def pct($a; $b): if $b and $b > 0 then "\(100 * $a / $b | round)%" else "-" end;
	def times($a; $b): if $b and $b > 0 then "\($a / $b * 10 | round / 10)x" else "-" end;
	map(select(.server | test("empty|million|purge|profiled") | not)) as $rows
	| (["protocol", "server", "c", "decisions/s", "of null", "of wrapped null", "p50 ms", "p99 ms", "p99 vs null", "p99 vs wrapped null", "x peer", "RSS MB", "errors", "mismatches", "cores srv/load/other"]),
	  ($rows | sort_by(.proto, .concurrency)[] | . as $r
	   | ($rows | null_of($r)) as $n
	   | ($rows | peer_of($r)) as $peer
	   | ($rows | wrapped_of($r)) as $w
	   | [.proto, .server, .concurrency, (.decisions_per_s | round),
	      (if .server == "null\(.proto)" then "-" else pct(.decisions_per_s; $n.decisions_per_s) end),
	      (if (.server | test("^greymilter")) and .proto == "milter" then pct(.decisions_per_s; $w.decisions_per_s) else "-" end),
	      .p50_ms, .p99_ms,
	      (if .server == "null\(.proto)" then "-" else times(.p99_ms; $n.p99_ms) end),
	      (if (.server | test("^greymilter")) and .proto == "milter" then times(.p99_ms; $w.p99_ms) else "-" end),
	      (if (.server | test("^greymilter")) then times(.decisions_per_s; $peer.decisions_per_s) else "-" end),
	      (.rss_kb / 1024 | round), .errors, .mismatches, "\(.server_cores)/\(.client_cores)/\(.other_cores)"])
	| @tsv' "$RESULTS" | column -t -s $'\t'

if [ -n "$PG_PORT" ]; then
	echo
	echo "PostgreSQL (same machine, server defaults) against the SQLite file, concurrency 32 (target: at least half the rate, p99 under 20 ms):"
	jq -r -s '
		(map(select(.server == "greymilter-file" and .concurrency == 32))) as $file
		| map(select(.server == "greymilter-pg" and .concurrency == 32))[] as $pg
		| ($file | map(select(.proto == $pg.proto)) | first) as $f
		| "  \($pg.proto): PostgreSQL \($pg.decisions_per_s | round)/s vs SQLite file \($f.decisions_per_s | round)/s = \(100 * $pg.decisions_per_s / $f.decisions_per_s | round)%; p99 \($pg.p99_ms) ms (SQLite \($f.p99_ms))"' "$RESULTS"
fi

if [ "$MILLION" -gt 0 ]; then
	echo
	jq -r -s --arg million "$MILLION" --arg purge "$purge_line" '
		(map(select(.server == "greymilter-empty")) | first) as $empty
		| (map(select(.server == "greymilter-million")) | first) as $m
		| (map(select(.server == "greymilter-purge")) | first) as $p
		| "store of \($million) triplets (half live, half expired), milter, concurrency 8:",
		  "  start-up         \($m.startup_ms) ms (target under 1000)",
		  "  RSS              \($m.rss_kb / 1024 | round) MB after the run (target under 150)",
		  "  decisions/s      \($m.decisions_per_s | round) vs \(if $empty then ($empty.decisions_per_s | round | tostring) else "-" end) on an empty store: \(if $empty then "\(100 * $m.decisions_per_s / $empty.decisions_per_s | round)%" else "-" end) (target at least 90%)",
		  "  p50 / p99        \($m.p50_ms) / \($m.p99_ms) ms (empty store \($empty.p50_ms) / \($empty.p99_ms)), errors \($m.errors), mismatches \($m.mismatches)",
		  "purge of the expired half under load:",
		  "  p99 / max        \($p.p99_ms) / \($p.max_ms) ms over the run, \($p.decisions_per_s | round) decisions/s, errors \($p.errors), mismatches \($p.mismatches) (target p99 under 50)",
		  "  greymilter said  \($purge | sub("^time=[^ ]* "; ""))"
	' "$RESULTS"
fi

if [ -s "$OUT/cpu.top.txt" ]; then
	echo
	echo "greymilter CPU profile under load, top 15 by own time (more in $OUT/cpu.top.txt, cumulative in cpu.cum.txt, allocations in allocs.*.txt):"
	sed -n '5,21p' "$OUT/cpu.top.txt"
fi
echo
echo "bench: done in $((SECONDS - started))s; results in $RESULTS"
