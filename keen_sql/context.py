"""The tenant context every keen transaction starts with: the one place that builds it.

`Database` (keen_sql.database), the event listeners (keen_sql.events) and the tests all
open their transactions with `SET_CONTEXT` and the parameters of `TenantContext.params`:
the role, the tenant and the timeouts, every one transaction-local (``set_config(…, true)``),
so nothing tenant-specific outlives the transaction on a pooled connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, LiteralString
from uuid import UUID

import psycopg

from keen_sql.config import Settings

__all__ = ["SET_CONTEXT", "TenantContext"]

# Bound as parameters: the role, the tenant's UUID text or '' for none (fail closed: no
# tenant context), and the two timeouts.
SET_CONTEXT: LiteralString = (
    "SELECT pg_catalog.set_config('role', %s, true),"
    " pg_catalog.set_config('app.current_user_id', %s, true),"
    " pg_catalog.set_config('statement_timeout', %s, true),"
    " pg_catalog.set_config('lock_timeout', %s, true)"
)
ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@dataclass(frozen=True, slots=True)
class TenantContext:
    """The fixed part of the context (role and timeouts); `params` adds the tenant."""

    role: str = "keen_app"
    statement_timeout: str = "30000ms"
    lock_timeout: str = "10000ms"

    def __post_init__(self) -> None:
        if not ROLE_NAME.fullmatch(self.role):
            raise ValueError(f"not a plain role name: {self.role!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantContext:
        """The context of `settings`: its service role and timeouts."""
        return cls(
            settings.app_role,
            f"{settings.statement_timeout_ms}ms",
            f"{settings.lock_timeout_ms}ms",
        )

    def params(self, user_id: UUID | str | None) -> tuple[str, str, str, str]:
        """Parameters of SET_CONTEXT for tenant `user_id` (None: no tenant, fail closed).

        A tenant id that is not a UUID is refused here (ValueError), before any SQL.
        """
        tenant = (
            "" if user_id is None else str(user_id if isinstance(user_id, UUID) else UUID(user_id))
        )
        return self.role, tenant, self.statement_timeout, self.lock_timeout

    def set(self, conn: psycopg.Connection[Any], user_id: UUID | str | None) -> None:
        """Set the context inside the transaction `conn` has open."""
        conn.execute(SET_CONTEXT, self.params(user_id), prepare=False)

    async def set_async(
        self, conn: psycopg.AsyncConnection[Any], user_id: UUID | str | None
    ) -> None:
        """The async twin of `set`."""
        await conn.execute(SET_CONTEXT, self.params(user_id), prepare=False)
