#!/usr/bin/env bash
# The embedded PostgreSQL cluster: a throwaway cluster in .pg/ of the checkout, on its own
# Unix socket (.pg/run) and port (KEEN_EMBEDDED_PORT, default 55432), never the system's 5432.
#   db.sh up      create (once) and start it, with its application database `keen`
#   db.sh down    stop it
#   db.sh url     print the superuser URL of the database `keen`
#   db.sh status  say whether it runs
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pgbin=${KEEN_PG_BIN:-/usr/lib/postgresql/15/bin}
dir=$root/.pg
data=$dir/data
run=$dir/run
port=${KEEN_EMBEDDED_PORT:-55432}

# initdb and postgres refuse to run as root: run them as the unprivileged 'postgres' user.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The application database `keen` (migrations, `make run`); tests make databases of their own.
url() { echo "postgresql://postgres@/keen?host=$run&port=$port"; }

up() {
  mkdir -p "$dir" "$run"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$dir" "$run"
  if [[ ! -f $data/PG_VERSION ]]; then
    as_owner "$pgbin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    # Settings of a throwaway development and test cluster: durable enough for a restart,
    # fast enough for the test suite; plpgsql_check preloaded for its profiler. Unix socket
    # only (no TCP listener): two checkouts on one machine, or a system server, never clash.
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = ''
port = $port
unix_socket_directories = '$run'
max_connections = 300
shared_buffers = 256MB
fsync = off
full_page_writes = off
wal_level = replica
shared_preload_libraries = 'plpgsql_check'
log_min_messages = warning
CONF
    [[ $(id -u) -eq 0 ]] && chown postgres: "$data/postgresql.conf"
  fi
  if ! as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    preload_pg_cron || true
    as_owner "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
  elif preload_pg_cron; then
    as_owner "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -m fast -w -t 60 restart >/dev/null
    echo "embedded PostgreSQL restarted to preload pg_cron"
  fi
  if [[ -z $(psql -X -At "postgresql://postgres@/postgres?host=$run&port=$port" \
        -c "SELECT 1 FROM pg_database WHERE datname = 'keen'") ]]; then
    psql -X -q "postgresql://postgres@/postgres?host=$run&port=$port" -c "CREATE DATABASE keen" >/dev/null
  fi
  echo "embedded PostgreSQL up: $(url)"
}

# pg_cron (keen-sql schedule), once installed (make setup installs it): preloaded, its jobs in
# background workers (no TCP listener for it to dial). Added to a new cluster's settings and,
# once, to a cluster made before pg_cron was installed; true when the settings were added.
preload_pg_cron() {
  [[ -f $("$pgbin/pg_config" --pkglibdir)/pg_cron.so ]] || return 1
  grep -q "^shared_preload_libraries = '.*pg_cron" "$data/postgresql.conf" && return 1
  cat >>"$data/postgresql.conf" <<CONF
shared_preload_libraries = 'plpgsql_check,pg_cron'
cron.use_background_workers = on
max_worker_processes = 16
CONF
}

down() {
  if [[ -f $data/PG_VERSION ]] && as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "embedded PostgreSQL stopped"
  fi
}

status() { as_owner "$pgbin/pg_ctl" -D "$data" status; }

case "${1:-}" in
  up) up ;; down) down ;; url) url ;; status) status ;;
  *) echo "usage: $0 up|down|url|status" >&2; exit 2 ;;
esac
