#!/usr/bin/env bash
# Ledger throughput by number of clients: pgbench's tpcb-like, deduct_credits spread over
# 10,000 accounts, deduct_credits on one hot account, and the same hot charge in one round trip
# (Database.deduct_credits), at 1, 2, 4 and 8 clients, each
# client count measured back to back in one run. Writes bench/credits/scaling.csv and draws
# bench/credits/scaling.png (bench/chart.py). Own database, dropped afterwards.
# Usage: bench/credits/scaling.sh [seconds per run, default 8]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-8}
source "$root/scripts/scratch_db.sh"
scratch_db bench_scaling
psql -X -q -v ON_ERROR_STOP=1 "$dburl" -f "$here/setup.sql" >/dev/null
pgbench -q -i -s 10 "$dburl" >/dev/null 2>&1

# Warm-up, not measured: the first run after loading pays for checkpoints and cold caches.
pgbench -n -M prepared -c 2 -j 2 -T "$secs" -b tpcb-like "$dburl" >/dev/null 2>&1
pgbench -n -M prepared -c 2 -j 2 -T "$secs" -f "$here/deduct_spread.sql" "$dburl" >/dev/null 2>&1

csv=$here/scaling.csv
echo "clients,workload,tps" >"$csv"
for clients in 1 2 4 8; do
  threads=$(( clients < 2 ? 1 : 2 ))
  for workload in tpcb-like spread hot hot-1trip; do
    case $workload in
      tpcb-like) script=(-b tpcb-like) ;;
      spread) script=(-f "$here/deduct_spread.sql") ;;
      hot) script=(-f "$here/deduct_hot.sql") ;;
      hot-1trip) script=(-f "$here/deduct_hot_one_trip.sql") ;;
    esac
    tps=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$secs" "${script[@]}" "$dburl" 2>&1 \
          | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1)
    echo "$clients,$workload,$tps" | tee -a "$csv"
  done
done
echo "verify_ledger() violations: $(psql -X -tAq "$dburl" -c 'SELECT count(*) FROM keen.verify_ledger()')"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $secs s per run"
"$root/.venv/bin/python" "$root/bench/chart.py" "$csv" "$here/scaling.png"
