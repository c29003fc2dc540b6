#!/usr/bin/env bash
# make test-citus: keen-sql on a real Citus cluster. KEEN_CITUS_URL names a database on an
# existing Citus coordinator (the citus extension created there and on every worker, the
# workers added: docs/scaling.md). Makes the three keen roles LOGIN (Citus connects to the
# workers as them), migrates, distributes, then runs the pgTAP suite of tests_citus/ and the
# Python API scenarios against the distributed database. Tenants are created per test, so
# the database may be reused; it is migrated in place (migrations are idempotent).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/scratch_db.sh"
url=${KEEN_CITUS_URL:?set KEEN_CITUS_URL to a database on a Citus coordinator with its workers added (docs/scaling.md)}
psql_c() { psql -X -q -v ON_ERROR_STOP=1 "$url" "$@"; }

version=$(psql_c -Atc "SELECT extversion FROM pg_extension WHERE extname = 'citus'")
workers=$(psql_c -Atc "SELECT count(*) FROM citus_get_active_worker_nodes()")
[ -n "$version" ] || { echo "test-citus: no citus extension in $url" >&2; exit 2; }
[ "$workers" -ge 1 ] || { echo "test-citus: the coordinator has no active worker" >&2; exit 2; }
echo "test-citus: Citus $version, $workers workers"

# The roles exist, with LOGIN, before the first migration (docs/scaling.md, "Roles"): a
# separate transaction each, which Citus propagates to every worker.
for role in keen_owner keen_app keen_analytics; do
  psql_c -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '$role') THEN
      CREATE ROLE $role LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
  END \$\$"
  psql_c -c "ALTER ROLE $role LOGIN"
done

PGOPTIONS="-c citus.create_object_propagation=deferred" \
  "$root/.venv/bin/keen-sql" --database-url "$url" migrate
# A database not yet distributed is a single-node deployment moving to Citus: it gets
# tenants first, and every figure must be the same once its rows sit on the shards.
distributed=$(psql_c -Atc "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'keen.users'::regclass")
snapshots=$(mktemp -d)
trap 'rm -rf "$snapshots"' EXIT
if [ "$distributed" = 0 ]; then
  "$root/.venv/bin/python" "$root/tests_citus/move.py" fill "$url"
  "$root/.venv/bin/python" "$root/tests_citus/move.py" snapshot "$url" >"$snapshots/before.json"
fi
"$root/.venv/bin/keen-sql" --database-url "$url" citus distribute
if [ "$distributed" = 0 ]; then
  "$root/.venv/bin/python" "$root/tests_citus/move.py" snapshot "$url" >"$snapshots/after.json"
  "$root/.venv/bin/python" "$root/tests_citus/move.py" compare "$snapshots/before.json" "$snapshots/after.json"
fi
psql_c -c "CREATE SCHEMA IF NOT EXISTS tap" -c "CREATE EXTENSION IF NOT EXISTS pgtap SCHEMA tap"

eval "$(libpq_env "$url")"
PGOPTIONS="-c search_path=tap,public" pg_prove --ext .sql -r "$root/tests_citus/"
KEEN_DATABASE_URL="$url" KEEN_PREPARED_DATABASE_URL="$url" \
  "$root/.venv/bin/pytest" -q -p no:cacheprovider "$root/tests_py/test_scenarios.py" "$root/tests_citus/"
