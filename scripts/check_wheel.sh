#!/usr/bin/env bash
# `make check-wheel` (CI): keen-sql as a service installs it.
#   1. build the sdist and the wheel (from the sdist) outside the checkout;
#   2. the wheel carries keen_sql, keen_queries and the migrations, and no code generator,
#      no demonstration, no development helper;
#   3. install it into a fresh virtualenv outside the checkout (psycopg in its library form,
#      on the system's libpq);
#   4. from another directory, with the checkout out of reach: `keen-sql migrate` builds the
#      whole schema on an empty database; keen_sql loads from site-packages; a tenant
#      transaction runs through it; plain `yoyo apply` builds the same from the package;
#   5. the scratch databases and the directory are removed whatever happens.
# The server: KEEN_DATABASE_URL, else the checkout's embedded cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/keen-sql-wheel.XXXXXX)
server=${KEEN_DATABASE_URL:-$("$root/scripts/db.sh" url)}
names=(keen_wheel_cli_$$ keen_wheel_yoyo_$$)

cleanup() {
  for name in "${names[@]}"; do
    psql -X -q "$server" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "check-wheel: $*"; }

step "building the sdist and the wheel in $work/dist (with the .venv's setuptools)"
"$root/.venv/bin/python" -m build --no-isolation --outdir "$work/dist" "$root" >"$work/build.log" 2>&1 ||
  { tail -n 30 "$work/build.log" >&2; echo "check-wheel: the build failed" >&2; exit 1; }
wheel=$(ls "$work"/dist/keen_sql-*.whl)
sdist=$(ls "$work"/dist/keen_sql-*.tar.gz)

step "contents of $(basename "$wheel")"
"$root/.venv/bin/python" - "$wheel" "$sdist" "$root" <<'PY'
import sys
import tarfile
import zipfile
from pathlib import Path

wheel, sdist, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
names = zipfile.ZipFile(wheel).namelist()
tops = sorted({n.split("/")[0] for n in names if not n.startswith("keen_sql-")})
assert tops == ["keen_queries", "keen_sql"], f"unexpected top-level entries: {tops}"
for banned in ("sqlc_psycopg", "keen_dev", "examples", "demo.py", "showcase.py", "tests"):
    assert not any(banned in n for n in names), f"the wheel carries {banned}"
shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("keen_sql/sql/migrations/"))
expected = sorted(p.name for p in (root / "migrations").glob("*.sql"))
assert shipped == expected, f"wheel migrations {shipped} != migrations/ {expected}"
in_sdist = tarfile.open(sdist).getnames()
assert sum("/keen_sql/sql/migrations/" in n for n in in_sdist) == len(expected)
print(f"  {len(names)} files: keen_sql, keen_queries, {len(shipped)} migration files")
PY

step "installing the wheel into a fresh virtualenv ($work/venv)"
python3.11 -m venv "$work/venv" 2>/dev/null || python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$wheel" >"$work/pip.log" 2>&1 ||
  { tail -n 30 "$work/pip.log" >&2; echo "check-wheel: pip install failed" >&2; exit 1; }

for name in "${names[@]}"; do
  psql -X -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE $name" >/dev/null
done
url() { "$root/.venv/bin/python" -c 'import sys; from keen_dev.databases import url_for; print(url_for(*sys.argv[1:]))' "$server" "$1"; }
cli_url=$(url "${names[0]}")
yoyo_url=$("$work/venv/bin/python" -c 'import sys; from keen_sql.migrations import yoyo_url; print(yoyo_url(sys.argv[1]))' "$(url "${names[1]}")")

# Elsewhere: no checkout on the path, the current directory or PYTHONPATH.
mkdir "$work/elsewhere"
cd "$work/elsewhere"
export -n PYTHONPATH 2>/dev/null || true
unset PYTHONPATH

step "keen-sql migrate from $PWD"
"$work/venv/bin/keen-sql" --version
"$work/venv/bin/keen-sql" migrate --database-url "$cli_url"
"$work/venv/bin/keen-sql" status --database-url "$cli_url" | grep -q pending &&
  { echo "check-wheel: migrations still pending after migrate" >&2; exit 1; }

step "import from site-packages, and a tenant transaction"
KEEN_DATABASE_URL=$cli_url "$work/venv/bin/python" - "$root" <<'PY'
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import keen_queries
import keen_sql
import psycopg
from keen_sql import Database

checkout = Path(sys.argv[1]).resolve()
for module in (keen_sql, keen_queries):
    where = Path(module.__file__).resolve()
    assert "site-packages" in where.parts, f"{module.__name__} loaded from {where}"
    assert checkout not in where.parents, f"{module.__name__} loaded from the checkout"
assert psycopg.pq.__impl__ == "python", f"psycopg {psycopg.pq.__impl__}: expected the library form"

# The SQL API by its fixed names (DESIGN.md), inside the library's own transactions.
tag = uuid.uuid4().hex[:10]
with Database() as db:  # KEEN_DATABASE_URL
    with db.service() as q:
        row = q.conn.execute(
            "SELECT keen.register_user(p_email => %s, p_username => %s, p_password_hash => %s)",
            (f"{tag}@example.com", f"u{tag}", "$argon2id$" + "x" * 40),
        ).fetchone()
    assert row is not None
    user = uuid.UUID(str(row[0]))
    with db.tenant(user) as q:
        q.conn.execute(
            "SELECT keen.add_credits(p_amount => %s, p_transaction_type => 'purchase',"
            " p_idempotency_key => %s)",
            (Decimal("12.5000"), f"k{tag}"),
        )
        row = q.conn.execute("SELECT current_balance FROM keen.credit_balance()").fetchone()
    assert row == (Decimal("12.5000"),), row
print(f"  keen_sql {keen_sql.__file__}")
print(f"  tenant {user}: balance {row[0]} (psycopg {psycopg.__version__} {psycopg.pq.__impl__}, libpq {psycopg.pq.version()})")
PY

step "plain yoyo apply from the package (package:keen_sql:sql/migrations)"
"$work/venv/bin/yoyo" apply --batch --database "$yoyo_url" package:keen_sql:sql/migrations
"$work/venv/bin/keen-sql" status --database-url "$(url "${names[1]}")" | grep -q pending &&
  { echo "check-wheel: yoyo left migrations pending" >&2; exit 1; }
step "ok"
