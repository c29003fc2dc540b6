"""Settings of keen-sql: where the database is, and how the pool behaves.

Connection rules (the same for `Database`, the event listeners and the `keen-sql` CLI):
an explicit libpq URL (``postgresql://…``) or key=value conninfo (``host=… dbname=…``);
else ``KEEN_DATABASE_URL``; else the empty conninfo, which lets libpq take everything from
its own environment (``PGHOST``, ``PGPORT``, ``PGDATABASE``, ``PGUSER``, ``PGPASSWORD`` or
``~/.pgpass``, ``PGSERVICE``, …). The library has no default of its own: the embedded
development cluster is the checkout's default (its make targets), never the installed
package's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# What pg_stat_activity shows for keen-sql's pooled connections when neither the conninfo
# nor PGAPPNAME names the application (libpq's fallback_application_name).
APPLICATION_NAME = "keen-sql"


def database_url() -> str:
    """Return ``KEEN_DATABASE_URL``, or '' (libpq's environment decides) when it is unset."""
    return os.environ.get("KEEN_DATABASE_URL", "")


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Settings:
    """Connection and pool settings; `Settings.from_env()` reads `KEEN_*` variables.

    `database_url` is a libpq URL or key=value conninfo; '' leaves it all to libpq's
    environment (see the module docstring).
    """

    database_url: str = field(default_factory=database_url)
    app_role: str = "keen_app"
    application_name: str = APPLICATION_NAME
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 30.0
    # Requests that may queue for a connection before the pool refuses more at once
    # (psycopg_pool.TooManyRequests): a stalled database fails fast instead of piling up.
    pool_max_waiting: int = 100
    # How long the pool keeps trying to reconnect before it logs an error (reconnect_failed).
    pool_reconnect_timeout: float = 300.0
    max_idle: float = 600.0
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 10_000
    prepare: bool = True
    # Check each connection with an empty query when the pool hands it out (one round trip).
    pool_check: bool = True
    # A streaming replica for `Database.read_only()`, and the replay lag it may have (s).
    replica_url: str | None = None
    replica_max_lag_s: float = 5.0

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from the environment, falling back to the defaults above."""
        return cls(
            database_url=database_url(),
            app_role=os.environ.get("KEEN_APP_ROLE", "keen_app"),
            application_name=os.environ.get("KEEN_APPLICATION_NAME", APPLICATION_NAME),
            pool_min_size=_env_int("KEEN_POOL_MIN_SIZE", 1),
            pool_max_size=_env_int("KEEN_POOL_MAX_SIZE", 10),
            pool_timeout=_env_float("KEEN_POOL_TIMEOUT", 30.0),
            pool_max_waiting=_env_int("KEEN_POOL_MAX_WAITING", 100),
            pool_reconnect_timeout=_env_float("KEEN_POOL_RECONNECT_TIMEOUT", 300.0),
            max_idle=_env_float("KEEN_POOL_MAX_IDLE", 600.0),
            statement_timeout_ms=_env_int("KEEN_STATEMENT_TIMEOUT_MS", 30_000),
            lock_timeout_ms=_env_int("KEEN_LOCK_TIMEOUT_MS", 10_000),
            prepare=_env_bool("KEEN_PREPARE", True),
            pool_check=_env_bool("KEEN_POOL_CHECK", True),
            replica_url=os.environ.get("KEEN_REPLICA_URL") or None,
            replica_max_lag_s=_env_float("KEEN_REPLICA_MAX_LAG_S", 5.0),
        )
