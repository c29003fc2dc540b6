"""Settings of keen-sql, read from the environment once, with the embedded cluster as default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_PORT = 55432


def embedded_url() -> str:
    """Return the superuser URL of the embedded cluster's database `keen` (scripts/db.sh)."""
    port = os.environ.get("KEEN_EMBEDDED_PORT", str(EMBEDDED_PORT))
    return f"postgresql://postgres@/keen?host={ROOT / '.pg' / 'run'}&port={port}"


def database_url() -> str:
    """Return `KEEN_DATABASE_URL`, or the embedded cluster's URL when it is unset."""
    return os.environ.get("KEEN_DATABASE_URL") or embedded_url()


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
    """Connection and pool settings; `Settings.from_env()` reads `KEEN_*` variables."""

    database_url: str = field(default_factory=database_url)
    app_role: str = "keen_app"
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 30.0
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
            pool_min_size=_env_int("KEEN_POOL_MIN_SIZE", 1),
            pool_max_size=_env_int("KEEN_POOL_MAX_SIZE", 10),
            pool_timeout=_env_float("KEEN_POOL_TIMEOUT", 30.0),
            max_idle=_env_float("KEEN_POOL_MAX_IDLE", 600.0),
            statement_timeout_ms=_env_int("KEEN_STATEMENT_TIMEOUT_MS", 30_000),
            lock_timeout_ms=_env_int("KEEN_LOCK_TIMEOUT_MS", 10_000),
            prepare=_env_bool("KEEN_PREPARE", True),
            pool_check=_env_bool("KEEN_POOL_CHECK", True),
            replica_url=os.environ.get("KEEN_REPLICA_URL") or None,
            replica_max_lag_s=_env_float("KEEN_REPLICA_MAX_LAG_S", 5.0),
        )
