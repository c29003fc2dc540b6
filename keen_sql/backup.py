"""Logical backups with a manifest, and restores that prove themselves.

`backup()` runs `pg_dump --format=custom` inside an exported snapshot and writes, beside the
dump, a manifest of the same snapshot: time, applied migrations, row counts per table, a
checksum of the credit ledger and the database's security catalogue (owners, table and
column grants, RLS, policies, function privileges). `restore()` creates a NEW database, loads
the dump in one transaction and verifies the result against the manifest, plus the operator
invariant checks (`keen.verify_ledger()`, `keen.verify_usage_stats()`,
`keen.verify_tenant_lookup()`) and RLS enabled and
forced on every tenant table. It refuses to restore over a non-empty database.

Backups must run as a superuser (or a BYPASSRLS role): tenant tables force RLS, and pg_dump
refuses to dump a table whose rows a policy would hide.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

PG_BIN = Path(os.environ.get("KEEN_PG_BIN", "/usr/lib/postgresql/15/bin"))
MANIFEST_FORMAT = 1
MANIFEST_SUFFIX = ".manifest.json"


class BackupError(Exception):
    """A backup or restore could not be carried out (tool failure, damaged or missing file)."""


class RestoreRefused(BackupError):
    """The restore target or server is not fit: the database is not empty, or roles are missing."""


class VerificationFailed(BackupError):
    """The restored database differs from what its manifest promises; `report` says how."""

    def __init__(self, report: RestoreReport) -> None:
        super().__init__(
            f"restored database {report.database!r} failed verification:\n  "
            + "\n  ".join(report.problems)
        )
        self.report = report


@dataclass(frozen=True, slots=True)
class DatabaseFacts:
    """What a backup records and a restore must reproduce, read in one snapshot."""

    migrations: list[str]
    row_counts: dict[str, int]
    ledger_rows: int | None
    ledger_checksum: str | None
    rls_forced_tables: list[str]
    roles: list[str]
    security: list[str]


@dataclass(frozen=True, slots=True)
class Manifest:
    """The JSON written beside every dump (`<dump>.manifest.json`)."""

    format: int
    created_at: str
    database: str
    server_version: str
    encoding: str
    lc_collate: str
    lc_ctype: str
    dump_file: str
    dump_bytes: int
    dump_sha256: str
    facts: DatabaseFacts

    def to_json(self) -> str:
        """Return the manifest as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read a manifest written by `backup()`."""
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise BackupError(f"manifest not found: {path}") from None
        if data.get("format") != MANIFEST_FORMAT:
            raise BackupError(f"{path}: manifest format {data.get('format')!r} is not supported")
        data["facts"] = DatabaseFacts(**data["facts"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Backup:
    """Where `backup()` wrote the dump and its manifest."""

    dump_path: Path
    manifest_path: Path
    manifest: Manifest


@dataclass(slots=True)
class RestoreReport:
    """Outcome of a restore: the checks run, and any difference from the manifest."""

    database: str
    url: str
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the restored database matches its manifest in every check."""
        return not self.problems


def manifest_path_for(dump_path: Path) -> Path:
    """Return the manifest path of a dump: `x.dump` → `x.manifest.json`."""
    return dump_path.with_suffix(MANIFEST_SUFFIX)


def url_with_dbname(url: str, dbname: str) -> str:
    """Return the libpq URL `url` pointed at database `dbname`."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "dbname"]
    path = "/" + quote(dbname, safe="")
    # quote, not quote_plus: libpq does not read '+' as a space (e.g. in `options=-c …`).
    return urlunsplit(parts._replace(path=path, query=urlencode(query, safe="/", quote_via=quote)))


def _run_tool(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackupError(f"{args[0]} not found (set KEEN_PG_BIN)") from None
    if done.returncode != 0:
        tool = Path(args[0]).name
        raise BackupError(f"{tool} failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return done.stdout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----- facts read from a database ------------------------------------------------------------

_TABLES = """
SELECT c.relname
FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = pg_catalog.to_regnamespace('keen') AND c.relkind IN ('r', 'p', 'm')
  AND c.relispopulated
ORDER BY c.relname
"""

# Tenant tables: every table of `keen` with a user_id column; each must force RLS.
_TENANT_TABLES = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = pg_catalog.to_regnamespace('keen') AND c.relkind IN ('r', 'p')
  AND EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
              WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped)
ORDER BY c.relname
"""

# One line per security-relevant catalogue entry of schema `keen`: owners, ACLs of tables
# and columns (items sorted, so grant order does not matter), RLS flags, policies, function
# properties and default privileges. Restores must reproduce these lines exactly.
_SECURITY = """
WITH ns AS (SELECT pg_catalog.to_regnamespace('keen') AS oid)
SELECT line FROM (
  SELECT 'schema keen owner=' || n.nspowner::regrole::text || ' acl='
         || coalesce((SELECT pg_catalog.string_agg(a::text, ',' ORDER BY a::text)
                      FROM pg_catalog.unnest(n.nspacl) AS a), '-') AS line
  FROM pg_catalog.pg_namespace AS n, ns WHERE n.oid = ns.oid
  UNION ALL
  SELECT pg_catalog.format('relation %s kind=%s owner=%s rls=%s force=%s acl=%s',
           c.relname, c.relkind, c.relowner::regrole, c.relrowsecurity, c.relforcerowsecurity,
           -- A default ACL as its explicit entries: pg_dump leaves out an ACL equal to the
           -- owner's defaults, so a restore may spell NULL what the source spelled out.
           (SELECT pg_catalog.string_agg(a::text, ',' ORDER BY a::text)
              FROM pg_catalog.unnest(coalesce(c.relacl, pg_catalog.acldefault(
                CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) AS a))
  FROM pg_catalog.pg_class AS c, ns
  WHERE c.relnamespace = ns.oid AND c.relkind IN ('r', 'p', 'm', 'v', 'S', 'f')
  UNION ALL
  SELECT pg_catalog.format('column %s.%s acl=%s', c.relname, a.attname,
           (SELECT pg_catalog.string_agg(x::text, ',' ORDER BY x::text)
            FROM pg_catalog.unnest(a.attacl) AS x))
  FROM pg_catalog.pg_attribute AS a
  JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid, ns
  WHERE c.relnamespace = ns.oid AND a.attacl IS NOT NULL AND NOT a.attisdropped
  UNION ALL
  SELECT pg_catalog.format('policy %s.%s cmd=%s permissive=%s roles=%s using=%s check=%s',
           c.relname, p.polname, p.polcmd, p.polpermissive,
           (SELECT pg_catalog.string_agg(CASE r WHEN 0 THEN 'public' ELSE r::regrole::text END,
                                         ',' ORDER BY 1)
            FROM pg_catalog.unnest(p.polroles) AS r),
           pg_catalog.pg_get_expr(p.polqual, p.polrelid),
           pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
  FROM pg_catalog.pg_policy AS p
  JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid, ns
  WHERE c.relnamespace = ns.oid
  UNION ALL
  SELECT pg_catalog.format('function %s owner=%s definer=%s config=%s acl=%s',
           f.oid::regprocedure, f.proowner::regrole, f.prosecdef,
           coalesce(pg_catalog.array_to_string(f.proconfig, ','), '-'),
           coalesce((SELECT pg_catalog.string_agg(a::text, ',' ORDER BY a::text)
                     FROM pg_catalog.unnest(f.proacl) AS a), '-'))
  FROM pg_catalog.pg_proc AS f, ns WHERE f.pronamespace = ns.oid
  UNION ALL
  SELECT pg_catalog.format('default privileges for %s on %s: %s',
           d.defaclrole::regrole, d.defaclobjtype,
           (SELECT pg_catalog.string_agg(a::text, ',' ORDER BY a::text)
            FROM pg_catalog.unnest(d.defaclacl) AS a))
  FROM pg_catalog.pg_default_acl AS d, ns WHERE d.defaclnamespace = ns.oid
) AS lines
ORDER BY line
"""

# Roles the database's objects name (owners, grantees, policy roles): they are cluster-wide,
# so a restore needs them on the target server beforehand.
_ROLES = """
WITH user_ns AS (
  SELECT oid, nspowner, nspacl FROM pg_catalog.pg_namespace
  WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
), grantees AS (
  SELECT nspowner AS r FROM user_ns
  UNION SELECT (pg_catalog.aclexplode(nspacl)).grantee FROM user_ns
  UNION SELECT relowner FROM pg_catalog.pg_class WHERE relnamespace IN (SELECT oid FROM user_ns)
  UNION SELECT (pg_catalog.aclexplode(relacl)).grantee FROM pg_catalog.pg_class
        WHERE relnamespace IN (SELECT oid FROM user_ns)
  UNION SELECT proowner FROM pg_catalog.pg_proc WHERE pronamespace IN (SELECT oid FROM user_ns)
  UNION SELECT (pg_catalog.aclexplode(proacl)).grantee FROM pg_catalog.pg_proc
        WHERE pronamespace IN (SELECT oid FROM user_ns)
  UNION SELECT (pg_catalog.aclexplode(a.attacl)).grantee FROM pg_catalog.pg_attribute AS a
        JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
        WHERE a.attacl IS NOT NULL AND c.relnamespace IN (SELECT oid FROM user_ns)
  UNION SELECT pg_catalog.unnest(polroles) FROM pg_catalog.pg_policy
)
SELECT DISTINCT r::regrole::text FROM grantees WHERE r <> 0 ORDER BY 1
"""


def applied_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """Return the ids of the yoyo migrations applied to the database, in order of application."""
    if conn.execute("SELECT pg_catalog.to_regclass('public._yoyo_migration')").fetchone() == (
        None,
    ):
        return []
    rows = conn.execute(
        "SELECT migration_id FROM public._yoyo_migration ORDER BY applied_at_utc, migration_id"
    ).fetchall()
    return [r[0] for r in rows]


def ledger_checksum(conn: psycopg.Connection[Any]) -> tuple[int, str] | None:
    """Return (rows, md5) of the credit ledger ordered by account and entry_no; None if absent.

    Every column takes part, rendered in UTC and ISO style so the checksum does not depend on
    the session's time zone. Runs in the caller's transaction (for a consistent snapshot).
    """
    if conn.execute("SELECT pg_catalog.to_regclass('keen.credit_transactions')").fetchone() == (
        None,
    ):
        return None
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    row = conn.execute(
        "SELECT pg_catalog.count(*),"
        " pg_catalog.md5(coalesce(pg_catalog.string_agg(t::text, E'\\n'"
        " ORDER BY t.account_id, t.entry_no), ''))"
        " FROM keen.credit_transactions AS t"
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Return the exact row count of every table and materialized view of schema `keen`."""
    names = [r[0] for r in conn.execute(_TABLES).fetchall()]
    if not names:
        return {}
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::text, pg_catalog.count(*) FROM keen.{}").format(
            sql.Literal(n), sql.Identifier(n)
        )
        for n in names
    )
    return {name: int(count) for name, count in conn.execute(query).fetchall()}


def tenant_tables_without_forced_rls(conn: psycopg.Connection[Any]) -> list[str]:
    """Return the tenant tables (those with a user_id) where RLS is not enabled and forced."""
    return [
        name
        for name, enabled, forced in conn.execute(_TENANT_TABLES).fetchall()
        if not (enabled and forced)
    ]


def collect_facts(conn: psycopg.Connection[Any]) -> DatabaseFacts:
    """Read the facts a manifest records, in the connection's current transaction."""
    ledger = ledger_checksum(conn)
    tenant = conn.execute(_TENANT_TABLES).fetchall()
    return DatabaseFacts(
        migrations=applied_migrations(conn),
        row_counts=row_counts(conn),
        ledger_rows=ledger[0] if ledger else None,
        ledger_checksum=ledger[1] if ledger else None,
        rls_forced_tables=[name for name, enabled, forced in tenant if enabled and forced],
        roles=[r[0] for r in conn.execute(_ROLES).fetchall()],
        security=[r[0] for r in conn.execute(_SECURITY).fetchall()],
    )


# ----- backup --------------------------------------------------------------------------------


def backup(database_url: str, out_dir: Path) -> Backup:
    """Dump the database to `out_dir` (custom format) with its manifest; return both paths.

    The manifest and the dump see the same snapshot: the facts are read in a repeatable-read
    transaction whose snapshot pg_dump imports (`--snapshot`), so concurrent writes cannot make
    them disagree. The manifest is written last: a dump without one is incomplete.
    """
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        info = conn.execute(
            "SELECT pg_catalog.current_database(), pg_catalog.current_setting('server_version'),"
            " pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,"
            " pg_catalog.pg_export_snapshot(), pg_catalog.now()"
            " FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database()"
        ).fetchone()
        assert info is not None
        dbname, version, encoding, collate, ctype, snapshot, taken_at = info
        facts = collect_facts(conn)
        stamp = taken_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        out_dir.mkdir(parents=True, exist_ok=True)
        dump_path = out_dir / f"{dbname}-{stamp}.dump"
        partial = dump_path.with_suffix(".dump.partial")
        try:
            _run_tool(
                [
                    str(PG_BIN / "pg_dump"),
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    f"--file={partial}",
                    f"--dbname={database_url}",
                ]
            )
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        conn.rollback()
    partial.rename(dump_path)
    manifest = Manifest(
        format=MANIFEST_FORMAT,
        created_at=taken_at.astimezone(UTC).isoformat(),
        database=dbname,
        server_version=version,
        encoding=encoding,
        lc_collate=collate,
        lc_ctype=ctype,
        dump_file=dump_path.name,
        dump_bytes=dump_path.stat().st_size,
        dump_sha256=_sha256(dump_path),
        facts=facts,
    )
    manifest_path = manifest_path_for(dump_path)
    tmp = manifest_path.with_suffix(".json.partial")
    tmp.write_text(manifest.to_json())
    tmp.rename(manifest_path)
    return Backup(dump_path, manifest_path, manifest)


# ----- restore -------------------------------------------------------------------------------

# Objects a freshly created database does not have: any of them makes a target non-empty.
_USER_OBJECTS = """
SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%')
     + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc AS p
        JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
     + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace AS n
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
          AND n.nspname NOT LIKE 'pg\\_%')
     + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql')
"""


def count_user_objects(database_url: str) -> int:
    """Return how many relations, functions, schemas and extensions a user put in a database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(_USER_OBJECTS).fetchone()
    assert row is not None
    return int(row[0])


def _prepare_target(server_url: str, manifest: Manifest, target: str) -> bool:
    """Check the server and the target; create the target. Return whether it was created."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles")}
        missing = [r for r in manifest.facts.roles if r not in existing]
        if missing:
            raise RestoreRefused(
                f"roles missing on the target server: {', '.join(missing)}; roles are"
                " cluster-wide: create them first (e.g. `pg_dumpall --roles-only` from the"
                " source, or apply migrations/0001 on an empty database)"
            )
        exists = conn.execute(
            "SELECT FROM pg_catalog.pg_database WHERE datname = %s", (target,)
        ).fetchone()
        if exists is None:
            conn.execute(
                sql.SQL(
                    "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}"
                ).format(
                    sql.Identifier(target),
                    sql.Literal(manifest.encoding),
                    sql.Literal(manifest.lc_collate),
                    sql.Literal(manifest.lc_ctype),
                )
            )
            # Database privileges are not in a dump: no TEMP for service logins (migration 0009).
            ident = sql.Identifier(target)
            conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(ident))
            conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO keen_owner").format(ident))
            return True
    objects = count_user_objects(url_with_dbname(server_url, target))
    if objects:
        raise RestoreRefused(
            f"refusing to restore: database {target!r} exists and is not empty ({objects}"
            " user objects); restore into a new database, or drop this one first"
        )
    return False


def restore(
    server_url: str, dump_path: Path, target: str, *, manifest_path: Path | None = None
) -> RestoreReport:
    """Restore a dump into the new database `target` on the server of `server_url`; verify it.

    The target is created (from template0, with the source's encoding and locale) unless it
    exists and is empty; a non-empty target is refused (`RestoreRefused`). The dump's checksum
    must match its manifest, the roles it names must exist on the server. pg_restore runs in
    one transaction and stops at the first error; a database this call created is dropped on
    failure. Raises `VerificationFailed` (database kept for inspection) when the result
    differs from the manifest; returns the report otherwise.
    """
    manifest = Manifest.load(manifest_path or manifest_path_for(dump_path))
    if not dump_path.is_file():
        raise BackupError(f"dump not found: {dump_path}")
    if _sha256(dump_path) != manifest.dump_sha256:
        raise BackupError(f"{dump_path} does not match the checksum in its manifest")
    created = _prepare_target(server_url, manifest, target)
    target_url = url_with_dbname(server_url, target)
    try:
        _run_tool(
            [
                str(PG_BIN / "pg_restore"),
                "--exit-on-error",
                "--single-transaction",
                # row_security=off (the default) makes REFRESH MATERIALIZED VIEW fail: it runs
                # as keen_owner, a non-superuser whose reads of the FORCE-RLS tables must go
                # through its owner_all policy. Data loads as the superuser bypass RLS anyway.
                "--enable-row-security",
                f"--dbname={target_url}",
                str(dump_path),
            ]
        )
        with psycopg.connect(target_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    except BaseException:
        if created:
            drop_database(server_url, target)
        raise
    report = verify(target_url, manifest)
    if not report.ok:
        raise VerificationFailed(report)
    return report


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` on the server of `server_url`, disconnecting its sessions."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _compare_lines(what: str, expected: list[str], actual: list[str]) -> list[str]:
    exp, act = set(expected), set(actual)
    return [f"{what} missing: {line}" for line in sorted(exp - act)] + [
        f"{what} unexpected: {line}" for line in sorted(act - exp)
    ]


#: Operator functions returning one row per violated invariant (empty when healthy).
VERIFIERS = ("verify_ledger", "verify_usage_stats", "verify_tenant_lookup")


def run_verifier(conn: psycopg.Connection[Any], name: str) -> list[str] | None:
    """Return the violations `keen.<name>()` reports, or None when the function is absent."""
    signature = f"keen.{name}()"
    exists = conn.execute("SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL", (signature,))
    if exists.fetchone() != (True,):
        return None
    query = sql.SQL("SELECT * FROM keen.{}()").format(sql.Identifier(name))
    return [str(row) for row in conn.execute(query).fetchall()]


def verify(database_url: str, manifest: Manifest) -> RestoreReport:
    """Check a restored database against `manifest`; return the report (problems empty if ok).

    Checks: applied migrations, row counts, ledger checksum, the security catalogue (owners,
    grants, policies, RLS flags), RLS enabled and forced on every tenant table, and
    `keen.verify_ledger()`, `keen.verify_usage_stats()` and `keen.verify_tenant_lookup()`
    empty (each skipped with a note when the function does not exist).
    """
    name = unquote(urlsplit(database_url).path.lstrip("/")) or "?"
    report = RestoreReport(database=name, url=database_url)
    expected = manifest.facts
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        actual = collect_facts(conn)
        unforced = tenant_tables_without_forced_rls(conn)
        invariants = {name: run_verifier(conn, name) for name in VERIFIERS}
        conn.rollback()

    report.checks.append(f"migrations: {len(actual.migrations)} applied")
    if actual.migrations != expected.migrations:
        report.problems.append(
            f"migrations differ: expected {expected.migrations}, found {actual.migrations}"
        )
    report.checks.append(f"row counts: {len(actual.row_counts)} tables")
    for table in sorted(expected.row_counts.keys() | actual.row_counts.keys()):
        want, got = expected.row_counts.get(table), actual.row_counts.get(table)
        if want != got:
            report.problems.append(f"row count of keen.{table}: expected {want}, found {got}")
    report.checks.append(
        f"ledger checksum: {actual.ledger_rows} rows, md5 {actual.ledger_checksum}"
    )
    if (actual.ledger_rows, actual.ledger_checksum) != (
        expected.ledger_rows,
        expected.ledger_checksum,
    ):
        report.problems.append(
            f"ledger differs: expected {expected.ledger_rows} rows md5 {expected.ledger_checksum},"
            f" found {actual.ledger_rows} rows md5 {actual.ledger_checksum}"
        )
    report.checks.append(f"security catalogue: {len(actual.security)} entries")
    report.problems += _compare_lines("security entry", expected.security, actual.security)
    report.checks.append(f"RLS forced on {len(actual.rls_forced_tables)} tenant tables")
    report.problems += [f"RLS not enabled and forced on keen.{t}" for t in unforced]
    report.problems += _compare_lines(
        "RLS-forced table", expected.rls_forced_tables, actual.rls_forced_tables
    )
    for name, violations in invariants.items():
        if violations is None:
            report.notes.append(f"keen.{name}() does not exist in this database: not run")
            continue
        report.checks.append(f"keen.{name}(): {len(violations)} violation(s)")
        report.problems += [f"{name}: {v}" for v in violations]
    return report
