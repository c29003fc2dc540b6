#!/usr/bin/env bash
# Runs the pgTAP suite: a fresh database, migrated with yoyo, pgTAP installed, pg_prove over
# tests_sql/, the database dropped afterwards whatever the outcome.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/scratch_db.sh"
scratch_db test_sql
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
