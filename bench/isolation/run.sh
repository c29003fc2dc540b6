#!/usr/bin/env bash
# Isolation bench: the cost of row-level security. The same tenant-scoped queries (a session
# list, a balance, a ledger page) run through RLS as keen_app (tenant set with set_config)
# and with an explicit WHERE user_id = … as a superuser (RLS bypassed), interleaved at
# random in one run on one database; medians compared. Writes bench/isolation/REPORT.md.
# Creates its own database and drops it afterwards.
# Usage: bench/isolation/run.sh [iterations per query and mode]   (make bench-isolation)
# Environment: TENANTS (default 10000), SESSIONS (default 1000000), ENTRIES (ledger rows per
# tenant, default 20).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
iterations=${1:-2000}
tenants=${TENANTS:-10000}
sessions=${SESSIONS:-1000000}
entries=${ENTRIES:-20}
source "$root/scripts/scratch_db.sh"
scratch_db bench_isolation
q() { psql -X -tAq -v ON_ERROR_STOP=1 "$dburl" -c "$1"; }

machine="$(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GB RAM, $(q 'SELECT version()' | cut -d' ' -f1-2); shared_buffers=$(q 'SHOW shared_buffers'), fsync=$(q 'SHOW fsync')"
echo "machine: $machine"
echo "seed: $tenants tenants, $sessions sessions, $entries ledger entries per tenant"
t0=$(date +%s.%N)
psql -X -q -v ON_ERROR_STOP=1 -v tenants="$tenants" -v sessions="$sessions" -v entries="$entries" \
  "$dburl" -f "$here/seed.sql" >/dev/null
seed_s=$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc -l)")
echo "seed: $seed_s s"
counts=$(q "SELECT (SELECT count(*) FROM keen.users) || ' users, ' || (SELECT count(*) FROM keen.agent_sessions) || ' sessions, ' || (SELECT count(*) FROM keen.credit_transactions) || ' ledger rows'")
echo "loaded: $counts"

cd "$root"
MACHINE="$machine" SEED_S="$seed_s" COUNTS="$counts" \
  "$root/.venv/bin/python" "$here/bench.py" "$dburl" "$iterations" "$here/REPORT.md"
