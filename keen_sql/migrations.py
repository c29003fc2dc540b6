"""yoyo migrations shipped with keen_sql: apply, roll back and report, on any database.

The migrations are package data, ``keen_sql/sql/migrations`` (in the checkout, a link to
``migrations/``), read through `importlib.resources`: an installed keen-sql builds its schema
from any working directory. Plain yoyo reaches the same files as the source
``package:keen_sql:sql/migrations`` (`MIGRATIONS_SOURCE`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations
from yoyo.backends.base import DatabaseBackend

__all__ = [
    "MIGRATIONS_SOURCE",
    "MigrationError",
    "MigrationState",
    "NoMigrations",
    "apply",
    "migration_files",
    "read",
    "rollback",
    "status",
    "yoyo_url",
]

# yoyo's name for migrations inside an installed package (`yoyo apply … <source>`).
MIGRATIONS_SOURCE = "package:keen_sql:sql/migrations"


class MigrationError(RuntimeError):
    """Migrating could not start or did not finish; the message says why and what to do."""


class NoMigrations(MigrationError):
    """The package carries no migration: a broken install, never an up-to-date database."""


def migration_files() -> Traversable:
    """The directory of the packaged migration files (`NNNN_name.sql` and their rollbacks)."""
    return resources.files("keen_sql").joinpath("sql", "migrations")


def read() -> Any:
    """The packaged migrations in order (a yoyo MigrationList); raise NoMigrations if none."""
    migrations = read_migrations(MIGRATIONS_SOURCE)
    if not len(migrations):
        raise NoMigrations(
            f"no migrations found in the keen_sql package ({MIGRATIONS_SOURCE}): the install "
            "is incomplete; reinstall keen-sql (a wheel or sdist built from the repository)"
        )
    return migrations


def yoyo_url(conninfo: str) -> str:
    """Turn a libpq URL or key=value conninfo ('' = libpq's PG* environment) into yoyo's URL.

    Every setting travels as a query parameter that yoyo hands to psycopg unchanged; what the
    conninfo leaves out, libpq takes from its environment, as for any other connection.
    """
    params = conninfo_to_dict(conninfo)
    return "postgresql+psycopg://" + (f"?{urlencode(params)}" if params else "")


# Why the history tables could not be created: yoyo swallows that error, then fails later on
# "relation yoyo_lock does not exist", which hides the cause.
_CAN_CREATE = """
SELECT current_user, current_database(), current_schema(),
       current_schema() IS NOT NULL AND has_schema_privilege(current_schema(), 'CREATE'),
       to_regclass('yoyo_lock') IS NOT NULL
"""


def _check_can_migrate(conninfo: str) -> None:
    """Raise MigrationError naming the missing privilege before yoyo hides it."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(_CAN_CREATE).fetchone()
    assert row is not None
    user, database, schema, can_create, has_lock_table = row
    if has_lock_table or can_create:
        return
    where = f"schema {schema}" if schema else "any schema of its search_path"
    raise MigrationError(
        f"role {user} may not create tables in {where} of database {database} (yoyo keeps its "
        "migration history there): migrate as the database owner, or GRANT CREATE ON SCHEMA "
        f"{schema or 'public'} TO {user}"
    )


@contextmanager
def _backend(conninfo: str) -> Iterator[DatabaseBackend]:
    _check_can_migrate(conninfo)
    backend = get_backend(yoyo_url(conninfo))
    try:
        yield backend
    finally:
        backend.connection.close()


@dataclass(frozen=True, slots=True)
class MigrationState:
    """One packaged migration and whether the database has it."""

    id: str
    applied: bool


def apply(conninfo: str) -> list[str]:
    """Apply every pending migration in order; return the ids applied.

    Raises NoMigrations when the package carries none, and MigrationError naming the
    migration when one fails (its database error chained), with nothing of it kept.
    """
    migrations = read()
    with _backend(conninfo) as backend, backend.lock():
        pending = backend.to_apply(migrations)
        done: list[str] = []
        for migration in pending:
            try:
                backend.apply_migrations_only([migration])
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {migration.id} failed and was rolled back: {_first_line(exc)}"
                    f" ({exc.sqlstate or 'no SQLSTATE'}); {len(done)} applied before it"
                ) from exc
            done.append(migration.id)
        backend.run_post_apply(pending)
        return done


def rollback(conninfo: str, count: int | None = None) -> list[str]:
    """Roll back the last `count` applied migrations (all when None); return their ids."""
    migrations = read()
    with _backend(conninfo) as backend, backend.lock():
        applied = backend.to_rollback(migrations)
        chosen = applied if count is None else applied[:count]
        backend.rollback_migrations(chosen)
        return [m.id for m in chosen]


def status(conninfo: str) -> list[MigrationState]:
    """List every packaged migration in order with whether it is applied."""
    migrations = read()
    with _backend(conninfo) as backend:
        applied = {m.id for m in backend.to_rollback(migrations)}
        return [MigrationState(m.id, m.id in applied) for m in migrations]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
