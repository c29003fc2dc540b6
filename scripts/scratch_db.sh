# Sourced by the test and bench drivers: `scratch_db LABEL` creates a database of their own,
# keen_LABEL_<pid>_<random>, on the configured server (KEEN_DATABASE_URL, else the embedded
# cluster), migrates it, and drops it when the script exits (`scratch_db_drop`, also for a
# script's own EXIT trap). Sets: url (the server's superuser URL), name, dburl (its URL).
# Under `make coverage` the database's PL/pgSQL statement counts are recorded before it goes.
scratch_db_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

scratch_db() {
  url=${KEEN_DATABASE_URL:-$("$scratch_db_root/scripts/db.sh" url)}
  name=keen_${1}_$$_$RANDOM
  dburl=$(cd "$scratch_db_root" && .venv/bin/python -c 'import sys; from keen_dev.databases import url_for; print(url_for(sys.argv[1], sys.argv[2]))' "$url" "$name")
  trap scratch_db_drop EXIT
  psql -X -q -v ON_ERROR_STOP=1 "$url" -c "CREATE DATABASE $name" >/dev/null
  "$scratch_db_root/.venv/bin/keen-sql" --database-url "$dburl" migrate >/dev/null
}

scratch_db_drop() {
  if [[ -n ${KEEN_PLPGSQL_COVERAGE:-} ]]; then
    (cd "$scratch_db_root" && .venv/bin/python -c 'import sys; from keen_dev.plpgsql_coverage import dump; dump(sys.argv[1], sys.argv[2])' "$dburl" "$name") || true
  fi
  psql -X -q "$url" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
}

# `eval "$(libpq_env URL)"`: the URL's settings as libpq environment variables (PGHOST,
# PGPORT, PGUSER, …), for pg_prove, which cannot take a URL whose query has '=' (it splits
# its options on '=').
libpq_env() {
  "$scratch_db_root/.venv/bin/python" -c '
import shlex, sys
from psycopg.conninfo import conninfo_to_dict
names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
         "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
for key, value in conninfo_to_dict(sys.argv[1]).items():
    if key in names:
        print(f"export {names[key]}={shlex.quote(str(value))}")
' "$1"
}
