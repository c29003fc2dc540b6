"""The tenant context every keen transaction starts with: the one place that builds it.

`Database` (keen_sql.database), the event listeners (keen_sql.events) and the tests all
open their transactions with the statements of `TenantContext.statements`: the role and the
timeouts (`SET_CONTEXT`, ``set_config(…, true)``), then the tenant (``SET LOCAL
app.current_user_id``), every one transaction-local, so nothing tenant-specific outlives the
transaction on a pooled connection. The tenant is a `SET LOCAL` because that is the form a
Citus coordinator propagates to its workers (with ``citus.propagate_set_commands =
'local'``, docs/scaling.md); `SET` takes no parameter, so its value is the validated UUID
composed as a literal. Pipelined after `BEGIN`, both cost no round trip of their own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg import sql

from keen_sql.config import Settings

__all__ = ["SET_CONTEXT", "Statement", "TenantContext"]

# Bound as parameters: the role and the two timeouts.
SET_CONTEXT: LiteralString = (
    "SELECT pg_catalog.set_config('role', %s, true),"
    " pg_catalog.set_config('statement_timeout', %s, true),"
    " pg_catalog.set_config('lock_timeout', %s, true)"
)
# The tenant's UUID text, or '' for none (fail closed: no tenant context).
SET_TENANT = sql.SQL("SET LOCAL app.current_user_id = {}")
ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

#: One statement of the context: its text and its parameters.
Statement = tuple[LiteralString | sql.Composed, Sequence[Any]]


@dataclass(frozen=True, slots=True)
class TenantContext:
    """The fixed part of the context (role and timeouts); `statements` adds the tenant."""

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

    def params(self) -> tuple[str, str, str]:
        """Parameters of SET_CONTEXT: the role and the two timeouts."""
        return self.role, self.statement_timeout, self.lock_timeout

    @staticmethod
    def tenant(user_id: UUID | str | None) -> sql.Composed:
        """`SET LOCAL app.current_user_id` for tenant `user_id` (None: no tenant, fail closed).

        A tenant id that is not a UUID is refused here (ValueError), before any SQL: only the
        canonical text of a parsed UUID becomes the literal.
        """
        tenant = (
            "" if user_id is None else str(user_id if isinstance(user_id, UUID) else UUID(user_id))
        )
        return SET_TENANT.format(sql.Literal(tenant))

    def statements(self, user_id: UUID | str | None) -> list[Statement]:
        """The context of tenant `user_id`, in order: role and timeouts, then the tenant."""
        return [(SET_CONTEXT, self.params()), (self.tenant(user_id), ())]

    def set(self, conn: psycopg.Connection[Any], user_id: UUID | str | None) -> None:
        """Set the context inside the transaction `conn` has open."""
        for query, params in self.statements(user_id):
            conn.execute(query, params, prepare=False)

    async def set_async(
        self, conn: psycopg.AsyncConnection[Any], user_id: UUID | str | None
    ) -> None:
        """The async twin of `set`."""
        for query, params in self.statements(user_id):
            await conn.execute(query, params, prepare=False)
