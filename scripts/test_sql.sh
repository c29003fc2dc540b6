#!/usr/bin/env bash
# Runs the pgTAP suite: a fresh database, migrated with yoyo, pgTAP installed, pg_prove over
# tests_sql/, the database dropped afterwards whatever the outcome.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/scratch_db.sh"
scratch_db test_sql
psql -X -q -v ON_ERROR_STOP=1 "$dburl" -c "CREATE SCHEMA tap; CREATE EXTENSION pgtap SCHEMA tap" >/dev/null
# pg_prove cannot take a URL whose query has '=': hand psql its settings as libpq's environment.
eval "$(libpq_env "$dburl")"
PGOPTIONS="-c search_path=tap,public" pg_prove --ext .sql -r "${@:-$root/tests_sql/}"
