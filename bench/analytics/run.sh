#!/usr/bin/env bash
# Analytics benchmark: with USERS users and SESSIONS sessions (seed.sql), the time of a
# dashboard refresh (concurrent, and plain with JIT off/on for comparison), a 30-day
# usage_report, verify/rebuild of the stats, and the cost that stats upkeep adds to a
# session's life (start/progress/complete_session), measured with the stats triggers on and
# off alternately in the same run on the same database.
# Creates its own database and drops it afterwards.
# Usage: bench/analytics/run.sh [seconds per pgbench run] [clients]   (make bench-analytics)
# Environment: USERS (default 10000), SESSIONS (default 1000000), ROUNDS (on/off
# alternations, default 5), CYCLE_SECONDS (per session-life run, default 10).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-20}
clients=${2:-4}
threads=2
users=${USERS:-10000}
rounds=${ROUNDS:-5}
cycle_secs=${CYCLE_SECONDS:-10}
sessions=${SESSIONS:-1000000}
source "$root/scripts/scratch_db.sh"
scratch_db bench_analytics

q() { psql -X -tAq -v ON_ERROR_STOP=1 "$dburl" -c "$1"; }
now() { date +%s.%N; }
elapsed() { printf '%.1f' "$(echo "$(now) - $1" | bc -l)"; }
# Milliseconds of one statement, from psql's \timing.
timed() { psql -X -q -v ON_ERROR_STOP=1 "$dburl" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'; }
latency() { sed -n 's/^latency average = \([0-9.]*\) ms/\1/p'; }
tps() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p'; }

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GB RAM; $(q 'SELECT version()' | cut -d' ' -f1-2); fsync=$(q 'SHOW fsync'), synchronous_commit=$(q 'SHOW synchronous_commit'), shared_buffers=$(q 'SHOW shared_buffers')"
echo "seed: $users users, $sessions sessions; pgbench $clients clients, $threads threads, $secs s per usage_report run"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: see the alternation)"

t0=$(now)
psql -X -q -v ON_ERROR_STOP=1 -v users="$users" -v sessions="$sessions" "$dburl" -f "$here/seed.sql" >/dev/null
echo "seed (bulk insert with triggers off, rebuild_usage_stats, VACUUM ANALYZE): $(elapsed "$t0") s"
echo "  sessions $(q 'SELECT count(*) FROM keen.agent_sessions'), ledger rows $(q 'SELECT count(*) FROM keen.credit_transactions'), stats rows $(q 'SELECT count(*) FROM keen.daily_usage_stats'), sessions in the dashboard window $(q "SELECT count(*) FROM keen.agent_sessions WHERE end_time IS NULL OR end_time >= now() - interval '24 hours'")"
echo "  rebuild_usage_stats() again (nothing to change): $(timed 'SELECT keen.rebuild_usage_stats()') ms"
echo "  verify_usage_stats(): $(timed 'SELECT count(*) FROM keen.verify_usage_stats()') ms, differences: $(q 'SELECT count(*) FROM keen.verify_usage_stats()')"

echo
echo "dashboard refresh (mean of pgbench -t runs, one client):"
pgbench -n -c 1 -t 1 -f "$here/refresh.sql" "$dburl" >/dev/null 2>&1  # warm the cache
echo "  refresh_dashboard_metrics() (CONCURRENTLY, jit off): $(pgbench -n -c 1 -t 10 -f "$here/refresh.sql" "$dburl" 2>&1 | latency) ms"
echo "  REFRESH (plain, jit off):                            $(PGOPTIONS='-c jit=off' pgbench -n -c 1 -t 10 -f "$here/refresh_plain.sql" "$dburl" 2>&1 | latency) ms"
echo "  REFRESH (plain, jit on, the server default):          $(PGOPTIONS='-c jit=on' pgbench -n -c 1 -t 3 -f "$here/refresh_plain.sql" "$dburl" 2>&1 | latency) ms"

echo
echo "usage_report, 30 days, random users (keen_app, RLS):"
out=$(pgbench -n -M prepared -c 1 -T "$secs" -D users="$users" -f "$here/usage_report.sql" "$dburl" 2>&1)
echo "  1 client:  latency $(printf '%s\n' "$out" | latency) ms per transaction (BEGIN, context, report, COMMIT)"
out=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$secs" -D users="$users" -f "$here/usage_report.sql" "$dburl" 2>&1)
echo "  $clients clients: $(printf '%s\n' "$out" | tps) tps, latency $(printf '%s\n' "$out" | latency) ms"

echo
echo "session life (start, progress, complete: 3 transactions), stats triggers on/off alternately,"
echo "$rounds rounds of $cycle_secs s per side, medians (each round's figures below them):"
triggers() {  # $1 ENABLE|DISABLE
  q "ALTER TABLE keen.agent_sessions $1 TRIGGER _500_track_usage_stats, $1 TRIGGER _500_track_usage_stats_update;
     ALTER TABLE keen.credit_transactions $1 TRIGGER _500_track_usage_stats;" >/dev/null
}
cycle() {  # $1 clients -> "cycles/s complete_ms commit_ms"
  local out
  out=$(pgbench -n -M prepared -r -c "$1" -j "$(( $1 < threads ? $1 : threads ))" -T "$cycle_secs" -D users="$users" \
        -f "$here/session_cycle.sql" "$dburl" 2>&1)
  printf '%s %s %s\n' "$(printf '%s\n' "$out" | tps)" \
    "$(printf '%s\n' "$out" | awk '/keen.complete_session/ {print $1}')" \
    "$(printf '%s\n' "$out" | awk '/COMMIT;/ {c=$1} END {print c}')"
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
# Warm-up (not reported): every pgbench connection compiles the PL/pgSQL functions and
# fills its caches on its first calls; the first timed run would otherwise pay for it.
pgbench -n -M prepared -c "$clients" -j "$threads" -T 5 -D users="$users" -f "$here/session_cycle.sql" "$dburl" >/dev/null 2>&1
for c in 1 "$clients"; do
  on=(); off=()
  for round in $(seq "$rounds"); do
    triggers ENABLE; on+=("$(cycle "$c")")
    triggers DISABLE; off+=("$(cycle "$c")")
  done
  col() { printf '%s\n' "${@:2}" | awk -v k="$1" '{print $k}' | median; }
  printf '  %d client(s): stats on  %8.1f cycles/s, complete_session %6.2f ms + its COMMIT %6.2f ms\n' "$c" \
    "$(col 1 "${on[@]}")" "$(col 2 "${on[@]}")" "$(col 3 "${on[@]}")"
  printf '  %d client(s): stats off %8.1f cycles/s, complete_session %6.2f ms + its COMMIT %6.2f ms\n' "$c" \
    "$(col 1 "${off[@]}")" "$(col 2 "${off[@]}")" "$(col 3 "${off[@]}")"
  printf '    rounds on  (cycles/s, complete ms, commit ms): %s\n' "$(printf '[%s] ' "${on[@]}")"
  printf '    rounds off (cycles/s, complete ms, commit ms): %s\n' "$(printf '[%s] ' "${off[@]}")"
done
triggers ENABLE
echo "  (stats rebuilt after the runs with triggers off: $(q 'SELECT keen.rebuild_usage_stats()') rows; differences now: $(q 'SELECT count(*) FROM keen.verify_usage_stats()'))"
