#!/usr/bin/env bash
# Credits benchmark: deduct_credits as keen_sql's Database.deduct_credits sends it (BEGIN, the
# tenant context, the call and COMMIT in one pipeline, one round trip, as keen_app under RLS,
# with an idempotency key and daily/monthly limits set) over 10,000 accounts ("spread") and
# with all clients on one account ("hot"), each against pgbench's built-in tpcb-like on the
# same server and database. Two servers in one run, interleaved: the embedded cluster
# (fsync off) and a throwaway durable cluster (fsync on, synchronous_commit on) that this
# script initialises, starts and removes itself. Then the server time per deduction
# (track_functions), a per-statement profile (pg_stat_statements) and verify_ledger() on both.
# Usage: bench/credits/run.sh [seconds per run, default 20] [clients, default 8]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-20}
clients=${2:-8}
threads=2
pgbin=${KEEN_PG_BIN:-/usr/lib/postgresql/15/bin}
as_owner() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# --- the embedded cluster: a scratch database of its own, dropped at exit -----------------
source "$root/scripts/scratch_db.sh"
scratch_db bench_credits
embedded=$dburl

# --- the durable cluster: fsync on, in a temporary directory, stopped and removed at exit --
durable_dir=$(mktemp -d /tmp/keen-bench-durable.XXXXXX)
durable_port=$(( 56000 + RANDOM % 1000 ))
[[ $(id -u) -eq 0 ]] && chown postgres: "$durable_dir"
as_owner "$pgbin/initdb" -D "$durable_dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$durable_dir/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $durable_port
unix_socket_directories = '$durable_dir'
max_connections = 100
shared_buffers = 256MB
# Durable: every COMMIT waits for its WAL to reach the disk (the defaults, stated).
fsync = on
synchronous_commit = on
full_page_writes = on
# Loaded but off during the timed runs; the profile run below turns it on.
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = none
CONF
as_owner "$pgbin/pg_ctl" -D "$durable_dir/data" -l "$durable_dir/postgres.log" -w -t 60 start >/dev/null
log=$(mktemp)
cleanup() {
  as_owner "$pgbin/pg_ctl" -D "$durable_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$durable_dir" "$log"
  scratch_db_drop
}
trap cleanup EXIT
durable_server="postgresql://postgres@/postgres?host=$durable_dir&port=$durable_port"
psql -X -q -v ON_ERROR_STOP=1 "$durable_server" -c "CREATE DATABASE keen_bench" >/dev/null
durable="postgresql://postgres@/keen_bench?host=$durable_dir&port=$durable_port"
"$root/.venv/bin/keen-sql" --database-url "$durable" migrate >/dev/null

for db in "$embedded" "$durable"; do
  psql -X -q -v ON_ERROR_STOP=1 "$db" -f "$here/setup.sql" >/dev/null
  # tpcb-like at scale 10: ten branches, so 8 clients do not all queue on one branch row.
  pgbench -q -i -s 10 "$db" >/dev/null 2>&1
  psql -X -q "$db" -c CHECKPOINT
done
psql -X -q "$durable" -c 'CREATE EXTENSION pg_stat_statements' >/dev/null

tps() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1; }
declare -A result
run() {  # $1 server label, $2 workload label, rest: pgbench arguments
  local server=$1 label=$2; shift 2
  local db out t lat
  db=$([[ $server == embedded ]] && echo "$embedded" || echo "$durable")
  out=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$secs" "$@" "$db" 2>&1)
  t=$(printf '%s\n' "$out" | tps)
  lat=$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
  printf '%-9s %-12s tps %9.1f   latency %7s ms\n' "$server" "$label" "$t" "$lat" >>"$log"
  result[$server,$label]=$(echo "${result[$server,$label]:-0} + $t" | bc -l)
}

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GB RAM, load $(cut -d' ' -f1-3 /proc/loadavg) at start;" \
  "$(psql -X -tAq "$embedded" -c 'SELECT version()' | cut -d' ' -f1-2);" \
  "$clients clients, $threads pgbench threads, $secs s per run, -M prepared;" \
  "embedded fsync=$(psql -X -tAq "$embedded" -c 'SHOW fsync'), durable fsync=$(psql -X -tAq "$durable" -c 'SHOW fsync')" \
  "synchronous_commit=$(psql -X -tAq "$durable" -c 'SHOW synchronous_commit')"
# Interleaved: each workload on one server, then on the other, tpcb-like first and last, so
# background load on the shared machine hits every side.
for server in embedded durable; do run "$server" tpcb-like -b tpcb-like; done
for server in embedded durable; do run "$server" spread -f "$here/deduct_spread_one_trip.sql"; done
for server in embedded durable; do run "$server" hot -f "$here/deduct_hot_one_trip.sql"; done
for server in embedded durable; do run "$server" tpcb-like -b tpcb-like; done
echo "load $(cut -d' ' -f1-3 /proc/loadavg) at the end of the runs"
cat "$log"
for server in embedded durable; do
  tpcb=$(echo "${result[$server,tpcb-like]} / 2" | bc -l)
  printf '%-9s spread / tpcb-like = %.2f (target >= 1.0), hot / tpcb-like = %.2f (target >= 0.5)\n' "$server" \
    "$(echo "${result[$server,spread]} / $tpcb" | bc -l)" "$(echo "${result[$server,hot]} / $tpcb" | bc -l)"
done
for server in embedded durable; do
  db=$([[ $server == embedded ]] && echo "$embedded" || echo "$durable")
  echo "$server: verify_ledger() violations after the runs: $(psql -X -tAq "$db" -c 'SELECT count(*) FROM keen.verify_ledger()')"
done

# Server time per deduction (a separate, shorter spread run on the durable cluster with
# function timing on, so the figures above are not skewed by it), and the profile of the
# statements inside it (pg_stat_statements, nested statements tracked).
psql -X -q "$durable" -c "ALTER DATABASE keen_bench SET track_functions = 'all'" \
  -c "ALTER DATABASE keen_bench SET pg_stat_statements.track = 'all'" \
  -c 'SELECT pg_stat_reset()' -c 'SELECT pg_stat_statements_reset()' >/dev/null
pgbench -n -M prepared -c "$clients" -j "$threads" -T "$(( secs / 2 > 5 ? secs / 2 : 5 ))" \
  -f "$here/deduct_spread_one_trip.sql" "$durable" >/dev/null 2>&1
sleep 1  # statistics reach the collector when backends exit
echo
echo "durable, spread, $clients clients: server time per deduction (track_functions), microseconds:"
psql -X -q "$durable" -P footer=off -c "
  WITH d AS (SELECT calls FROM pg_stat_user_functions WHERE funcname = 'deduct_credits')
  SELECT f.funcname AS function, round(f.calls::numeric / d.calls, 2) AS calls_per_deduction,
         round((f.self_time * 1000 / d.calls)::numeric, 1) AS self_us,
         round((f.total_time * 1000 / d.calls)::numeric, 1) AS total_us
    FROM pg_stat_user_functions AS f, d ORDER BY f.total_time DESC LIMIT 8"
echo "profile per statement (pg_stat_statements, top level and nested), microseconds per deduction:"
psql -X -q "$durable" -P footer=off -c "
  WITH d AS (SELECT calls FROM pg_stat_user_functions WHERE funcname = 'deduct_credits')
  SELECT round((s.total_exec_time * 1000 / d.calls)::numeric, 1) AS us_per_deduction,
         round(s.calls::numeric / d.calls, 2) AS calls_per_deduction,
         left(regexp_replace(s.query, '\s+', ' ', 'g'), 90) AS statement
    FROM pg_stat_statements AS s, d
   WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = 'keen_bench')
   ORDER BY s.total_exec_time DESC LIMIT 12"
