#!/usr/bin/env bash
# `make coverage`: the whole test suite once, measuring
#   - Python line coverage of keen_sql/ and the sqlc plugin (pytest-cov), and
#   - PL/pgSQL statement coverage of every keen function (plpgsql_check's profiler).
# The profiler is switched on cluster-wide for the run (ALTER SYSTEM) and off again after:
# run it on the embedded cluster or a server of your own.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
url=${KEEN_DATABASE_URL:-$(scripts/db.sh url)}
export KEEN_PLPGSQL_COVERAGE=$(mktemp -d)
fail_under=${KEEN_COVERAGE_FAIL_UNDER:-90}

profiler() {
  psql -X -q -v ON_ERROR_STOP=1 "$url" -c "ALTER SYSTEM SET plpgsql_check.profiler = $1" \
    -c "SELECT pg_reload_conf()" >/dev/null
}
cleanup() { profiler off; rm -rf "$KEEN_PLPGSQL_COVERAGE"; }
trap cleanup EXIT
profiler on

# sqlc runs the plugin as a subprocess without environment: a wrapper with absolute paths,
# first on sqlc's PATH (tools/sqlc_psycopg/tests/corpus.py), records its coverage beside pytest-cov's.
plugin_dir=$KEEN_PLPGSQL_COVERAGE/bin
mkdir -p "$plugin_dir"
cat >"$plugin_dir/sqlc-gen-psycopg" <<WRAPPER
#!/bin/sh
exec "$root/.venv/bin/python" -m coverage run --parallel-mode --source="$root/tools/sqlc_psycopg/sqlc_psycopg" \\
  --data-file="$root/.coverage" -m sqlc_psycopg
WRAPPER
chmod +x "$plugin_dir/sqlc-gen-psycopg"
export KEEN_SQLC_PLUGIN_DIR=$plugin_dir
rm -f .coverage .coverage.*

status=0
scripts/test_sql.sh || status=1
.venv/bin/pytest -q -p no:cacheprovider --cov=keen_sql --cov=sqlc_psycopg --cov-report= || status=1
.venv/bin/python -m coverage combine --append -q .coverage.* 2>/dev/null || true
.venv/bin/python -m coverage report --fail-under="$fail_under" || status=1
.venv/bin/python -m keen_dev.plpgsql_coverage "$KEEN_PLPGSQL_COVERAGE" "$fail_under" || status=1
exit $status
