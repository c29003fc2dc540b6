#!/usr/bin/env bash
# Sessions benchmark, in one run on its own database (created, then dropped):
#   1. session_tree over a 10,000-node tree, side by side with a 1,000-node tree;
#   2. progress reports with a cost per second with 8 clients: on 8 tenants ("spread") and on
#      8 sessions of one tenant ("one"), interleaved (spread, one, one, spread), side by side
#      with pgbench's built-in tpcb-like on the same server and database (target: one/spread
#      >= 0.9);
#   3. events per second delivered to one EventListener while 8 clients write them, and the
#      replay rate of a new listener over the same log;
#   3b. events per second an EventHub delivers to 1,000 subscribers while 8 clients write
#      them on random ones of those tenants, and the server connections it holds.
# Usage: bench/sessions/run.sh [seconds] [clients]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-10}
clients=${2:-8}
threads=2
source "$root/scripts/scratch_db.sh"
scratch_db bench_sessions
setup_start=$(date +%s.%N)
psql -X -q -v ON_ERROR_STOP=1 "$dburl" -f "$here/setup.sql" >/dev/null
setup_secs=$(echo "$(date +%s.%N) - $setup_start" | bc -l)
pgbench -q -i -s 10 "$dburl" >/dev/null 2>&1

field() { sed -n "s/^$1 = \([0-9.]*\) .*/\1/p" | head -1; }
run() {  # $1 label, $2 clients, rest: pgbench script arguments; prints "tps latency_ms"
  local label=$1 c=$2; shift 2
  local out
  out=$(pgbench -n -M prepared -c "$c" -j "$(( c < threads ? c : threads ))" -T "$secs" "$@" "$dburl" 2>&1)
  local t; t=$(printf '%s\n' "$out" | field tps)
  local lat; lat=$(printf '%s\n' "$out" | field 'latency average')
  printf '%-12s clients %2s  tps %10s  latency %9s ms\n' "$label" "$c" "$t" "$lat" >&2
  echo "$t $lat"
}

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GB RAM; $(psql -X -tAq "$dburl" -c 'SELECT version()' | cut -d' ' -f1-2); fsync=$(psql -X -tAq "$dburl" -c 'SHOW fsync'); synchronous_commit=$(psql -X -tAq "$dburl" -c 'SHOW synchronous_commit'); $secs s per run" >&2
printf 'setup: 11,000 sessions (two trees) started through start_session in %.1f s\n\n' "$setup_secs" >&2

echo "== 1. session_tree (1 client) ==" >&2
read -r _ lat10k < <(run tree10k 1 -f "$here/tree10k.sql")
read -r _ lat1k < <(run tree1k 1 -f "$here/tree1k.sql")
printf 'session_tree: 10,000 nodes %s ms, 1,000 nodes %s ms; ratio %.1f for 10x the nodes\n\n' \
  "$lat10k" "$lat1k" "$(echo "$lat10k / $lat1k" | bc -l)" >&2

echo "== 2. progress reports ($clients clients) ==" >&2
read -r t1 _ < <(run tpcb-like "$clients" -b tpcb-like)
read -r spread1 _ < <(run spread "$clients" -f "$here/progress_spread.sql")
read -r one1 _ < <(run one-tenant "$clients" -f "$here/progress_one.sql")
read -r one2 _ < <(run one-tenant "$clients" -f "$here/progress_one.sql")
read -r spread2 _ < <(run spread "$clients" -f "$here/progress_spread.sql")
read -r t2 _ < <(run tpcb-like "$clients" -b tpcb-like)
tpcb=$(echo "($t1 + $t2) / 2" | bc -l)
spread=$(echo "($spread1 + $spread2) / 2" | bc -l)
one=$(echo "($one1 + $one2) / 2" | bc -l)
printf 'spread / tpcb-like = %.2f; one-tenant / spread = %.2f (target >= 0.9)\n\n' \
  "$(echo "$spread / $tpcb" | bc -l)" "$(echo "$one / $spread" | bc -l)" >&2

echo "== 3. events delivered to one listener ($clients writers on one tenant) ==" >&2
(cd "$root" && "$root/.venv/bin/python" "$here/listen.py" "$dburl" "$secs" "$clients" "$here/progress_one.sql") >&2

echo "== 3b. events delivered by one EventHub to 1,000 subscribers ($clients writers on random ones) ==" >&2
(cd "$root" && "$root/.venv/bin/python" "$here/hub.py" "$dburl" "$secs" "$clients" "$here/progress_fan.sql") >&2

echo "== 4. cancel_session of a whole tree (one transaction) ==" >&2
cancel() {  # $1 root session id; prints the milliseconds of cancel_session, as keen_app
  psql -X -q -v ON_ERROR_STOP=1 "$dburl" <<SQL | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-tree')::uuid::text, true) \\g /dev/null
\\timing on
SELECT execution_status FROM keen.cancel_session('$1') \\g /dev/null
\\timing off
COMMIT;
SQL
}
c1k=$(cancel tree1k-0)
c10k=$(cancel tree10k-0)
printf 'cancel_session: 1,000 sessions %s ms, 10,000 sessions %s ms; ratio %.1f for 10x the sessions\n' \
  "$c1k" "$c10k" "$(echo "$c10k / $c1k" | bc -l)" >&2

gaps=$(psql -X -tAq "$dburl" -c "SELECT count(*) FROM keen.agent_sessions s WHERE s.last_event_seq <> (SELECT count(*) FROM keen.session_events e WHERE e.session_id = s.id)")
echo "sessions whose event log has a gap after the run: $gaps" >&2
