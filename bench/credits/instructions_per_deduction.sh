#!/usr/bin/env bash
# Instructions per deduction, a figure the machine's load does not change: the loop of
# profile_loop.sql (deductions over setup.sql's accounts as keen_app, the tenant set per
# call) in a single-user backend under callgrind, on a STOPPED cluster's data directory
# (e.g. `scripts/db.sh down`, then .pg/data). A warm-up of 200 deductions, then 100 or 600:
# the difference of the two totals / 500. Each database must hold setup.sql's accounts; the
# runs add ledger rows to it.
# Usage: bench/credits/instructions_per_deduction.sh DATADIR DATABASE...
set -euo pipefail
pgbin=${KEEN_PG_BIN:-/usr/lib/postgresql/15/bin}
dir=$1; shift
out=$(mktemp -d /tmp/keen-callgrind.XXXXXX)
chmod 777 "$out"
trap 'rm -rf "$out"' EXIT
as_owner() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
loop() {  # $1: deductions after the warm-up
  local body="PERFORM set_config('app.current_user_id', md5('bench-' || (1 + (i * 7919 + \$2) % 10000))::uuid::text, true);
    PERFORM keen.deduct_credits(p_amount => 0.0100, p_description => 'bench', p_idempotency_key => gen_random_uuid()::text);"
  printf 'SET ROLE keen_app;\n\n'
  printf 'DO $$ BEGIN FOR i IN 1..200 LOOP %s END LOOP; END $$;\n\n' "${body//\$2/0}"
  printf 'DO $$ BEGIN FOR i IN 1..%s LOOP %s END LOOP; END $$;\n\n' "$1" "${body//\$2/3}"
}
for db in "$@"; do
  declare -A ir=()
  for n in 100 600; do
    loop "$n" | as_owner valgrind --tool=callgrind --callgrind-out-file="$out/$db.$n.out" \
      "$pgbin/postgres" --single -j -D "$dir" "$db" >"$out/$db.$n.log" 2>&1
    if grep -q ERROR "$out/$db.$n.log"; then grep ERROR "$out/$db.$n.log" >&2; exit 1; fi
    ir[$n]=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/$db.$n.log")
  done
  echo "$db: $(( (ir[600] - ir[100]) / 500 )) instructions per deduction"
done
