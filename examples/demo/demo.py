"""The demonstration's start (`make run`): migrate, then show what the database holds.

For now it prints the applied migrations and a summary of the schema `keen` (tables with
their rows and row-level security, functions with their security and who may call them);
the full demonstration of every capability builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from examples.demo import showcase
from keen_sql import migrations

# Operator utility: the catalog of the schema `keen`, one row per table or view.
_RELATIONS = """
SELECT c.relname, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_catalog.pg_policy AS p WHERE p.polrelid = c.oid)
FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'p', 'm', 'v')
ORDER BY c.relkind DESC, c.relname
"""

# One row per function of `keen`: signature, SECURITY DEFINER, volatility, callable by keen_app.
_FUNCTIONS = """
SELECT p.oid::regprocedure::text, p.prosecdef, p.provolatile::text,
       pg_catalog.has_function_privilege('keen_app', p.oid, 'EXECUTE'),
       p.prorettype = 'trigger'::regtype
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = 'keen'::regnamespace
ORDER BY 1
"""

_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}


@dataclass(frozen=True, slots=True)
class Relation:
    """A table or materialized view of `keen` and its row-level security."""

    name: str
    kind: str
    rows: int | None
    rls_enabled: bool
    rls_forced: bool
    policies: int


@dataclass(frozen=True, slots=True)
class Function:
    """A function of `keen`: its signature and who may call it."""

    signature: str
    security_definer: bool
    volatility: str
    app_may_execute: bool
    is_trigger: bool


def _safe_url(database_url: str) -> str:
    """Return the URL without its password, for printing."""
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def relations(conn: psycopg.Connection[tuple[object, ...]]) -> list[Relation]:
    """List the tables and views of `keen` with their row counts and row-level security."""
    found: list[Relation] = []
    for name, kind, enabled, forced, policies in conn.execute(_RELATIONS).fetchall():
        rows: int | None = None
        if kind != "m" or _is_populated(conn, str(name)):
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("keen", str(name)))
            row = conn.execute(query).fetchone()
            rows = int(str(row[0])) if row else 0
        found.append(
            Relation(str(name), str(kind), rows, bool(enabled), bool(forced), int(str(policies)))
        )
    return found


def _is_populated(conn: psycopg.Connection[tuple[object, ...]], matview: str) -> bool:
    """Whether materialized view keen.`matview` has been refreshed (it can be counted)."""
    row = conn.execute(
        "SELECT ispopulated FROM pg_catalog.pg_matviews"
        " WHERE schemaname = 'keen' AND matviewname = %s",
        [matview],
    ).fetchone()
    return bool(row and row[0])


def functions(conn: psycopg.Connection[tuple[object, ...]]) -> list[Function]:
    """List the functions of `keen` with their security, volatility and callers."""
    return [
        Function(str(sig), bool(definer), _VOLATILITY.get(str(vol), str(vol)), bool(app), bool(tg))
        for sig, definer, vol, app, tg in conn.execute(_FUNCTIONS).fetchall()
    ]


def run(database_url: str) -> int:
    """Migrate, print the migrations and the schema summary, then run the demonstration."""
    applied_now = migrations.apply(database_url)
    print(f"keen-sql on {_safe_url(database_url)}")
    print(f"\nmigrations ({len(applied_now)} applied just now):")
    for state in migrations.status(database_url):
        print(f"  {'applied' if state.applied else 'PENDING'}  {state.id}")

    with psycopg.connect(database_url, autocommit=True) as conn:
        rels = relations(conn)
        funcs = functions(conn)

    print(f"\ntables and views of schema keen ({len(rels)}):")
    print(f"  {'name':<24} {'kind':<18} {'rows':>8}  row-level security")
    for rel in rels:
        kind = "materialized view" if rel.kind == "m" else "table"
        rows = "unpopulated" if rel.rows is None else str(rel.rows)
        rls = (
            "enabled and forced"
            if rel.rls_enabled and rel.rls_forced
            else ("enabled" if rel.rls_enabled else "-")
        )
        if rel.policies:
            rls += f", {rel.policies} policies"
        print(f"  {rel.name:<24} {kind:<18} {rows:>8}  {rls}")

    api = [f for f in funcs if not f.is_trigger]
    triggers = len(funcs) - len(api)
    print(f"\nfunctions of schema keen ({len(api)}, plus {triggers} trigger functions):")
    for fn in api:
        marks = [fn.volatility]
        if fn.security_definer:
            marks.append("SECURITY DEFINER")
        marks.append("keen_app may call" if fn.app_may_execute else "operators only")
        print(f"  {fn.signature}  [{', '.join(marks)}]")
    return showcase.scenario(database_url)
