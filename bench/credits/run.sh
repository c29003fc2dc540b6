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
source "$root/scripts/scratch_db.sh"
scratch_db bench_credits
psql -X -q -v ON_ERROR_STOP=1 "$dburl" -f "$here/setup.sql" >/dev/null
# tpcb-like at scale 10: ten branches, so 8 clients do not all queue on one branch row.
pgbench -q -i -s 10 "$dburl" >/dev/null 2>&1

tps() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1; }
log=$(mktemp); trap 'rm -f "$log"; scratch_db_drop' EXIT
run() {  # $1 label, rest: pgbench arguments; prints the tps, logs a line
  local label=$1; shift
  local out t lat
  out=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$secs" "$@" "$dburl" 2>&1)
  t=$(printf '%s\n' "$out" | tps)
  lat=$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
  printf '%-10s tps %9.1f   latency %7s ms\n' "$label" "$t" "$lat" >>"$log"
  echo "$t"
}

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GB RAM, load $(cut -d' ' -f1-3 /proc/loadavg);" \
  "$(psql -X -tAq "$dburl" -c 'SELECT version()' | cut -d' ' -f1-2), fsync=$(psql -X -tAq "$dburl" -c 'SHOW fsync');" \
  "$clients clients, $threads pgbench threads, $secs s per run, -M prepared"
# Interleaved (tpcb, spread, hot, hot-1stmt, spread-1trip, hot-1trip, tpcb): background load on the shared machine hits both sides.
t1=$(run tpcb-like -b tpcb-like)
spread=$(run spread -f "$here/deduct_spread.sql")
hot=$(run hot -f "$here/deduct_hot.sql")
# Informational (not the target's figure): the hot deduction as one implicit-transaction
# statement, so the account lock is not held across the client's COMMIT round trip.
hot1=$(run hot-1stmt -f "$here/deduct_hot_one_statement.sql")
# keen_sql's one-round-trip call (Database.deduct_credits): the same transaction, pipelined.
spread1=$(run spread-1trip -f "$here/deduct_spread_one_trip.sql")
hot1trip=$(run hot-1trip -f "$here/deduct_hot_one_trip.sql")
t2=$(run tpcb-like -b tpcb-like)
cat "$log"
tpcb=$(echo "($t1 + $t2) / 2" | bc -l)
printf 'spread / tpcb-like = %.2f (target >= 1.0)\nhot / tpcb-like    = %.2f (target >= 0.5)\n' \
  "$(echo "$spread / $tpcb" | bc -l)" "$(echo "$hot / $tpcb" | bc -l)"
printf 'Database.deduct_credits (one round trip): spread / tpcb-like = %.2f, hot / tpcb-like = %.2f\n' \
  "$(echo "$spread1 / $tpcb" | bc -l)" "$(echo "$hot1trip / $tpcb" | bc -l)"
printf 'hot-1stmt / tpcb-like = %.2f (informational: one statement per deduction, not keen_sql'"'"'s transaction shape)\n' \
  "$(echo "$hot1 / $tpcb" | bc -l)"
echo "verify_ledger() violations after the runs: $(psql -X -tAq "$dburl" -c 'SELECT count(*) FROM keen.verify_ledger()')"

# Profile (a separate, shorter spread run with function timing on, so the figures above are
# not skewed by it): time per deduction spent in each PL/pgSQL / SQL function.
psql -X -q "$dburl" -c "ALTER DATABASE $name SET track_functions = 'all'" -c 'SELECT pg_stat_reset()' >/dev/null
pgbench -n -M prepared -c "$clients" -j "$threads" -T "$(( secs / 2 > 5 ? secs / 2 : 5 ))" -f "$here/deduct_spread.sql" "$dburl" >/dev/null 2>&1
sleep 1  # statistics reach the collector when backends exit
echo
echo "profile of deduct_credits (spread), microseconds per deduction:"
psql -X -q "$dburl" -P footer=off -c "
  WITH d AS (SELECT calls FROM pg_stat_user_functions WHERE funcname = 'deduct_credits')
  SELECT f.funcname AS function, f.calls / d.calls AS calls_per_deduction,
         round((f.self_time * 1000 / d.calls)::numeric, 1) AS self_us,
         round((f.total_time * 1000 / d.calls)::numeric, 1) AS total_us
    FROM pg_stat_user_functions AS f, d ORDER BY f.self_time DESC LIMIT 15"
