#!/usr/bin/env bash
# Runs the pgTAP suite: a fresh database, migrated with yoyo, pgTAP installed, pg_prove over
# tests_sql/, the database dropped afterwards whatever the outcome.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
url=${KEEN_DATABASE_URL:-$("$root/scripts/db.sh" url)}
name=keen_test_sql_$$_$RANDOM
dburl=$("$root/.venv/bin/python" -c 'import sys; from tests_py.support.databases import url_for; print(url_for(sys.argv[1], sys.argv[2]))' "$url" "$name")

cleanup() {
  # Under `make coverage`, record the PL/pgSQL statement counts before the database goes.
  if [[ -n ${KEEN_PLPGSQL_COVERAGE:-} ]]; then
    (cd "$root" && .venv/bin/python -c 'import sys; from tests_py.support.plpgsql_coverage import dump; dump(sys.argv[1], sys.argv[2])' "$dburl" "$name") || true
  fi
  psql -X -q "$url" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT
psql -X -q -v ON_ERROR_STOP=1 "$url" -c "CREATE DATABASE $name" >/dev/null
"$root/.venv/bin/keen-sql" --database-url "$dburl" migrate >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$dburl" -c "CREATE SCHEMA tap; CREATE EXTENSION pgtap SCHEMA tap" >/dev/null
# pg_prove cannot take a URL whose query has '=' (it splits its options on '='): hand psql
# the URL's settings as libpq environment variables instead (PGHOST, PGPORT, PGUSER, …).
eval "$("$root/.venv/bin/python" -c '
import shlex, sys
from psycopg.conninfo import conninfo_to_dict
names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
         "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
for key, value in conninfo_to_dict(sys.argv[1]).items():
    if key in names:
        print(f"export {names[key]}={shlex.quote(str(value))}")
' "$dburl")"
PGOPTIONS="-c search_path=tap,public" pg_prove --ext .sql -r "${@:-$root/tests_sql/}"
