"""Scratch databases for tests: one migrated template per run, cloned per module or test.

Tests only ever touch databases they created here, named `keen_test_*`, and drop them.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from keen_dev import plpgsql_coverage

# The checkout these helpers belong to (tools/keen_dev/keen_dev/databases.py).
CHECKOUT = Path(__file__).resolve().parents[3]


def embedded_url(*, start: bool = False) -> str:
    """The superuser URL of the checkout's embedded cluster (scripts/db.sh), started first
    when `start`: the checkout's default server, never the installed library's."""
    db_sh = str(CHECKOUT / "scripts" / "db.sh")
    if start:
        subprocess.run([db_sh, "up"], check=True, capture_output=True)
    return subprocess.run([db_sh, "url"], check=True, capture_output=True, text=True).stdout.strip()


def server_url(*, start: bool = True) -> str:
    """The server the checkout's tests, scripts and benchmarks use: KEEN_DATABASE_URL, else
    the embedded cluster (started unless `start` is False)."""
    return os.environ.get("KEEN_DATABASE_URL") or embedded_url(start=start)


def url_for(base_url: str, dbname: str) -> str:
    """Return `base_url` pointed at the database `dbname` (path or `dbname=` query)."""
    parts = urlsplit(base_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "dbname"]
    return urlunsplit(
        parts._replace(path="/" + quote(dbname, safe=""), query=urlencode(query, safe="/"))
    )


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """Create database `name` (optionally cloned from `template`); return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(stmt)
        if template:
            # A clone does not copy the template's database privileges: repeat what migration
            # 0009 sets (no TEMP for PUBLIC, so none for a service login; keen_owner keeps it).
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(ident))
            conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO keen_owner").format(ident))
    return url_for(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, disconnecting whoever is still on it.

    Under `make coverage` the database's PL/pgSQL statement counts are recorded first; the
    database is dropped whatever happens to that record.
    """
    try:
        plpgsql_coverage.dump(url_for(admin_url, name), name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            conn.execute(stmt)


def scratch_name(kind: str) -> str:
    """Return a fresh database name `keen_test_<kind>_<random>`."""
    return f"keen_test_{kind}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def admin_url() -> str:
    """Superuser URL of the server under test; starts the embedded cluster when none is set."""
    return server_url()


@contextmanager
def scratch_database(
    admin_url: str, kind: str, *, template: str | None = None, migrate: bool = False
) -> Iterator[tuple[str, str]]:
    """Create `keen_test_<kind>_<random>` (a clone of `template`, or migrated when `migrate`);
    yield its name and URL; drop it afterwards, whatever happened."""
    name = scratch_name(kind)
    url = create_database(admin_url, name, template=template)
    try:
        if migrate:
            # Imported here: creating and dropping databases needs nothing of keen_sql.
            from keen_sql import migrations

            migrations.apply(url)
        yield name, url
    finally:
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> Iterator[str]:
    """Name of a database migrated once per run, used as the template of every clone."""
    with scratch_database(admin_url, "tpl", migrate=True) as (name, _):
        yield name


@pytest.fixture(scope="module")
def db_url(admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a migrated database of this test module's own (superuser connection).

    With KEEN_PREPARED_DATABASE_URL set (`make test-citus`: a Citus coordinator migrated and
    distributed beforehand), that database itself: tests that take `db_url` make tenants of
    their own, so they can share it.
    """
    prepared = os.environ.get("KEEN_PREPARED_DATABASE_URL")
    if prepared:
        yield prepared
        return
    template = request.getfixturevalue("template_db")
    with scratch_database(admin_url, "mod", template=template) as (_, url):
        yield url


@pytest.fixture
def fresh_db_url(admin_url: str, template_db: str) -> Iterator[str]:
    """URL of a migrated database of this one test's own."""
    with scratch_database(admin_url, "fn", template=template_db) as (_, url):
        yield url


@pytest.fixture
def empty_db_url(admin_url: str) -> Iterator[str]:
    """URL of an empty database (no migrations) of this one test's own."""
    with scratch_database(admin_url, "empty") as (_, url):
        yield url
