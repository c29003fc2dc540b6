#!/usr/bin/env bash
# Credits benchmark: deduct_credits with every check (tenant context, RLS as keen_app, limits,
# idempotency key) over 10,000 accounts ("spread") and with all clients on one account ("hot"),
# each measured in the same run as pgbench's built-in tpcb-like on the same server and database.
# Creates its own database and drops it afterwards. Usage: bench/credits/run.sh [seconds] [clients]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-20}
clients=${2:-8}
threads=2
url=${KEEN_DATABASE_URL:-$("$root/scripts/db.sh" url)}
name=keen_bench_credits_$$
dburl=$(cd "$root" && "$root/.venv/bin/python" -c 'import sys; from tests_py.support.databases import url_for; print(url_for(sys.argv[1], sys.argv[2]))' "$url" "$name")
cleanup() { psql -X -q "$url" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT

psql -X -q -v ON_ERROR_STOP=1 "$url" -c "CREATE DATABASE $name" >/dev/null
"$root/.venv/bin/keen-sql" --database-url "$dburl" migrate >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$dburl" -f "$here/setup.sql" >/dev/null
# tpcb-like at scale 10: ten branches, so 8 clients do not all queue on one branch row.
pgbench -q -i -s 10 "$dburl" >/dev/null 2>&1

tps() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1; }
run() {  # $1 label, rest: pgbench script arguments
  local label=$1; shift
  local out
  out=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$secs" "$@" "$dburl" 2>&1)
  local t; t=$(printf '%s\n' "$out" | tps)
  local lat; lat=$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
  printf '%-10s tps %10s  latency %8s ms\n' "$label" "$t" "$lat" >&2
  echo "$t"
}

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GB RAM; $(psql -X -tAq "$dburl" -c 'SELECT version()' | cut -d' ' -f1-2); fsync=$(psql -X -tAq "$dburl" -c 'SHOW fsync'); $clients clients, $threads threads, $secs s per run" >&2
# Interleaved (tpcb, spread, hot, tpcb): background load on the shared machine hits both sides.
t1=$(run tpcb-like -b tpcb-like)
spread=$(run spread -f "$here/deduct_spread.sql")
hot=$(run hot -f "$here/deduct_hot.sql")
t2=$(run tpcb-like -b tpcb-like)
tpcb=$(echo "($t1 + $t2) / 2" | bc -l)
check=$(psql -X -tAq "$dburl" -c 'SELECT count(*) FROM keen.verify_ledger()')
printf '\nspread / tpcb-like = %.2f (target >= 1.0)\nhot / tpcb-like    = %.2f (target >= 0.5)\nverify_ledger() violations after the run: %s\n' \
  "$(echo "$spread / $tpcb" | bc -l)" "$(echo "$hot / $tpcb" | bc -l)" "$check"
