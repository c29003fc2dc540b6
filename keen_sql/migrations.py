"""yoyo migrations of migrations/: apply, roll back and report, on any database URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from yoyo import get_backend, read_migrations
from yoyo.backends.base import DatabaseBackend

from keen_sql.config import ROOT

MIGRATIONS_DIR = ROOT / "migrations"


def yoyo_url(database_url: str) -> str:
    """Turn a libpq URL (postgresql://…) into yoyo's psycopg 3 URL (postgresql+psycopg://…)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"not a PostgreSQL URL: {database_url!r}")
    return f"postgresql+psycopg://{rest}"


@contextmanager
def _backend(database_url: str) -> Iterator[DatabaseBackend]:
    backend = get_backend(yoyo_url(database_url))
    try:
        yield backend
    finally:
        backend.connection.close()


@dataclass(frozen=True, slots=True)
class MigrationState:
    """One migration of migrations/ and whether the database has it."""

    id: str
    applied: bool


def apply(database_url: str) -> list[str]:
    """Apply every pending migration in order; return the ids applied."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(database_url) as backend, backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
        return [m.id for m in pending]


def rollback(database_url: str, count: int | None = None) -> list[str]:
    """Roll back the last `count` applied migrations (all when None); return their ids."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(database_url) as backend, backend.lock():
        applied = backend.to_rollback(migrations)
        chosen = applied if count is None else applied[:count]
        backend.rollback_migrations(chosen)
        return [m.id for m in chosen]


def status(database_url: str) -> list[MigrationState]:
    """List every migration of migrations/ in order with whether it is applied."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(database_url) as backend:
        applied = {m.id for m in backend.to_rollback(migrations)}
        return [MigrationState(m.id, m.id in applied) for m in migrations]
