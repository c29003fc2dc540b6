#!/usr/bin/env bash
# The embedded PostgreSQL cluster: a throwaway cluster of this checkout, on its own Unix socket
# and port (KEEN_EMBEDDED_PORT, default 55432), never the system's 5432. The checkout's default
# server (make targets, tests); the installed library never uses it.
#   db.sh up      create (once) and start it, with its application database `keen`
#   db.sh down    stop it
#   db.sh url     print the superuser URL of the database `keen`
#   db.sh status  say whether it runs
#
# Who runs it: the invoking user; as root, the system user `postgres` (initdb and postgres
# refuse to run as root). Where: .pg/ of the checkout when that user can reach it. When it
# cannot (as root in a clone under a 0700 directory, such as /root) or the socket path would
# be too long for Unix sockets, the cluster lives in /var/tmp/keen-sql-<uid>-<hash of the
# checkout's path> (mode 0700) and .pg links to it: each checkout keeps a cluster of its own.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pgbin=${KEEN_PG_BIN:-/usr/lib/postgresql/15/bin}
port=${KEEN_EMBEDDED_PORT:-55432}
link=$root/.pg

fail() {
  echo "db.sh: $*" >&2
  exit 1
}

as_root() { [[ $(id -u) -eq 0 ]]; }
as_owner() {
  if as_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Whether the cluster's user can reach (search) directory $1, every parent included.
reachable() {
  if as_root; then runuser -u postgres -- test -x "$1" 2>/dev/null; else test -x "$1"; fi
}

# The cluster's directory, without creating anything: an existing link or cluster is kept.
locate() {
  if [[ -L $link ]]; then
    dir=$(readlink -- "$link")
  elif [[ -f $link/data/PG_VERSION ]] ||
    { reachable "$root" && ((${#link} + 22 <= 107)); }; then
    dir=$link
  else
    dir=/var/tmp/keen-sql-$(id -u)-$(printf '%s' "$root" | sha256sum | cut -c1-12)
  fi
  data=$dir/data
  run=$dir/run
}

# The application database `keen` (migrations, `make run`); tests make databases of their own.
url() { echo "postgresql://postgres@/keen?host=$run&port=$port"; }

# What must be there before anything starts; each failure is one line: what, and what to do.
preflight() {
  [[ -x $pgbin/initdb && -x $pgbin/pg_ctl ]] ||
    fail "PostgreSQL 15 is not installed ($pgbin/initdb missing): run 'make setup' as root, or set KEEN_PG_BIN"
  command -v psql >/dev/null || fail "psql is not installed: run 'make setup' as root"
  if as_root; then
    id -u postgres >/dev/null 2>&1 ||
      fail "as root the cluster runs as the system user 'postgres', which does not exist: run 'make setup' (postgresql-15 creates it)"
  fi
}

# Create the cluster's directory outside the checkout and link .pg to it.
make_outside() {
  if [[ -e $link && ! -L $link ]]; then
    # A .pg/ left by an earlier start that could not create the cluster: nothing in it to keep.
    rm -rf -- "$link"
  fi
  if [[ -e $dir ]]; then
    [[ -d $dir && ! -L $dir ]] || fail "$dir exists and is not a directory: remove it"
    local who
    who=$(stat -c %U -- "$dir")
    [[ $who == "$(id -un)" || (as_root && $who == postgres) ]] ||
      fail "$dir belongs to $who, not to this cluster's user: remove it (or set KEEN_EMBEDDED_PORT and use another checkout path)"
  else
    mkdir -m 0700 -- "$dir" || fail "cannot create $dir: check that /var/tmp is writable"
  fi
  ln -sfn -- "$dir" "$link"
}

up() {
  preflight
  locate
  if [[ $dir != "$link" ]]; then make_outside; fi
  mkdir -p -- "$dir" "$run"
  chmod 0700 -- "$dir"
  if as_root; then chown postgres: -- "$dir" "$run"; fi
  if [[ ! -f $data/PG_VERSION ]]; then
    local out
    out=$(as_owner "$pgbin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 2>&1) ||
      fail "initdb failed in $data: $(tail -n 1 <<<"$out")"
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
    if as_root; then chown postgres: "$data/postgresql.conf"; fi
  fi
  if ! as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    preload_pg_cron || true
    as_owner "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start >/dev/null 2>&1 ||
      fail "the cluster in $data did not start: $(tail -n 1 "$dir/postgres.log" 2>/dev/null || echo 'no log') (full log: $dir/postgres.log)"
  elif preload_pg_cron; then
    as_owner "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -m fast -w -t 60 restart >/dev/null 2>&1 ||
      fail "the cluster in $data did not restart: $(tail -n 1 "$dir/postgres.log" 2>/dev/null || echo 'no log') (full log: $dir/postgres.log)"
    echo "embedded PostgreSQL restarted to preload pg_cron"
  fi
  local admin="postgresql://postgres@/postgres?host=$run&port=$port"
  if [[ -z $(psql -X -At "$admin" -c "SELECT 1 FROM pg_database WHERE datname = 'keen'") ]]; then
    psql -X -q "$admin" -c "CREATE DATABASE keen" >/dev/null
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
  locate
  if [[ -f $data/PG_VERSION ]] && as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "embedded PostgreSQL stopped"
  fi
}

status() {
  locate
  [[ -f $data/PG_VERSION ]] || fail "no embedded cluster yet (make db-up creates it in $dir)"
  as_owner "$pgbin/pg_ctl" -D "$data" status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  url) locate && url ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|url|status" >&2
    exit 2
    ;;
esac
