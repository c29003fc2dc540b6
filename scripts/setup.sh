#!/usr/bin/env bash
# Installs what keen-sql needs: the Debian packages (as root) and the project virtualenv.
# Idempotent: each step is skipped when what it installs is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql-15 postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
          postgresql-15-plpgsql-check pgbouncer
          postgresql-15-cron pgbackrest)  # the scheduler and the PITR tool (docs/operations.md)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run 'make setup' as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The virtualenv is rebuilt only when pyproject.toml is newer than the last install.
stamp=.venv/.installed
if [[ ! -x .venv/bin/python ]]; then
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
# keen-sql itself, and the development tools beside it (the sqlc plugin, the shared helpers of
# tests, scripts and bench), each a project of its own that the keen-sql wheel does not carry.
projects=(pyproject.toml tools/sqlc_psycopg/pyproject.toml tools/keen_dev/pyproject.toml)
newer=$(find "${projects[@]}" -newer "$stamp" 2>/dev/null || true)
if [[ ! -f $stamp || -n $newer ]]; then
  echo "setup: installing Python dependencies into .venv"
  # Two steps: a keen-sql installed before the plugin moved to tools/ owned the command
  # sqlc-gen-psycopg, and replacing it removes that file; the tools install it again after.
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  .venv/bin/pip install -q --disable-pip-version-check -e tools/sqlc_psycopg -e tools/keen_dev
  touch "$stamp"
fi
