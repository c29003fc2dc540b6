"""Domain errors of keen-sql: one table from SQLSTATE to exception class.

Every failure the SQL functions raise on purpose carries its own SQLSTATE (`KE001`…, see
docs/errors.md). `translate()` turns a psycopg error of one of those codes into the class
registered for it here; callers write ``raise translate(exc) from exc`` so the original
psycopg error stays attached as ``__cause__``. Errors of any other SQLSTATE come back
unchanged. Nothing here parses messages: the code, and for unique violations the
constraint name, decide.
"""

from __future__ import annotations

from typing import ClassVar

import psycopg

__all__ = [
    "ERRORS",
    "AccountNotActive",
    "AlreadyExists",
    "DailyLimitExceeded",
    "HierarchyLimitExceeded",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidAmount",
    "InvalidArgument",
    "InvalidStateTransition",
    "KeenError",
    "LockTimeout",
    "MonthlyLimitExceeded",
    "NoTenantContext",
    "NotFound",
    "RefreshTokenReuse",
    "StatementTimeout",
    "translate",
]


class KeenError(Exception):
    """Base of every keen-sql domain error.

    Attributes:
        sqlstate: the SQLSTATE the server raised (a class attribute of each subclass).
        message: the server's primary message, naming the offending values.
        detail: the server's DETAIL, or None.
        hint: the server's HINT, or None.
        constraint: the violated constraint's name when the server reported one, else None.
    """

    sqlstate: ClassVar[str] = ""

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
        constraint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        self.constraint = constraint

    def __str__(self) -> str:
        parts = [self.message]
        if self.detail:
            parts.append(f"DETAIL: {self.detail}")
        if self.hint:
            parts.append(f"HINT: {self.hint}")
        return "\n".join(parts)


class InsufficientCredits(KeenError):
    """KE001: the available balance does not cover the amount."""

    sqlstate = "KE001"


class DailyLimitExceeded(KeenError):
    """KE002: the deduction would pass the account's daily spending limit."""

    sqlstate = "KE002"


class MonthlyLimitExceeded(KeenError):
    """KE003: the deduction would pass the account's monthly spending limit."""

    sqlstate = "KE003"


class InvalidAmount(KeenError):
    """KE004: an amount that is not positive, finite and of at most 4 decimal places."""

    sqlstate = "KE004"


class IdempotencyConflict(KeenError):
    """KE005: an idempotency key reused with different arguments."""

    sqlstate = "KE005"


class NotFound(KeenError):
    """KE006: no such object, or not the caller's (indistinguishable by design)."""

    sqlstate = "KE006"


class InvalidStateTransition(KeenError):
    """KE007: the object's current state does not allow the operation."""

    sqlstate = "KE007"


class HierarchyLimitExceeded(KeenError):
    """KE008: a session tree would pass its maximum depth or number of children."""

    sqlstate = "KE008"


class AlreadyExists(KeenError):
    """KE009: a duplicate e-mail, username, session id or connection id."""

    sqlstate = "KE009"


class NoTenantContext(KeenError):
    """KE010: a tenant function was called without `app.current_user_id` set."""

    sqlstate = "KE010"


class RefreshTokenReuse(KeenError):
    """KE011: an already rotated refresh token was presented; its family is revoked."""

    sqlstate = "KE011"


class AccountNotActive(KeenError):
    """KE012: the user or credit account is suspended, closed or deleted."""

    sqlstate = "KE012"


class InvalidArgument(KeenError):
    """KE013: an invalid argument other than an amount (time zone, phase, interval…)."""

    sqlstate = "KE013"


class StatementTimeout(KeenError):
    """57014: the statement was cancelled (statement_timeout, or a cancel request)."""

    sqlstate = "57014"


class LockTimeout(KeenError):
    """55P03: a lock was not granted within lock_timeout (or NOWAIT failed)."""

    sqlstate = "55P03"


#: The one SQLSTATE → exception table (docs/errors.md documents each entry).
ERRORS: dict[str, type[KeenError]] = {
    cls.sqlstate: cls
    for cls in (
        InsufficientCredits,
        DailyLimitExceeded,
        MonthlyLimitExceeded,
        InvalidAmount,
        IdempotencyConflict,
        NotFound,
        InvalidStateTransition,
        HierarchyLimitExceeded,
        AlreadyExists,
        NoTenantContext,
        RefreshTokenReuse,
        AccountNotActive,
        InvalidArgument,
        StatementTimeout,
        LockTimeout,
    )
}

#: Unique constraints on values a caller chooses: violating one means "already exists" (or,
#: for a payment intent, the idempotency conflict KE005).
UNIQUE_CONSTRAINTS: dict[str, type[KeenError]] = {
    # E-mail, username, token hash and billing customer id are unique across tenants through
    # keen.tenant_lookup (migration 0016): the functions raise KE009 themselves (DETAIL
    # users_lower_email_key, users_lower_username_key, users_billing_customer_id_key); a
    # direct write that reaches the lookup's key is the same conflict.
    "tenant_lookup_pkey": AlreadyExists,
    "agent_sessions_user_id_session_id_key": AlreadyExists,
    "websocket_connections_user_id_connection_id_key": AlreadyExists,
    # A payment credits once per tenant. add_credits raises KE005 itself for a reused intent;
    # only a billing call (complete_recharge_request) naming an intent the tenant already
    # used reaches the key, and that is the same conflict.
    "credit_transactions_user_id_stripe_payment_intent_id_key": IdempotencyConflict,
}


def translate(exc: psycopg.Error) -> Exception:
    """Return the keen-sql exception for `exc`, or `exc` itself when it has none.

    Use as ``raise translate(exc) from exc``. A registered SQLSTATE becomes its class; a
    unique violation (23505) of a constraint in `UNIQUE_CONSTRAINTS` becomes that class;
    every other error, including non-server errors without a SQLSTATE, is returned as is.
    """
    diag = exc.diag
    cls = ERRORS.get(exc.sqlstate or "")
    if cls is None and exc.sqlstate == "23505":
        cls = UNIQUE_CONSTRAINTS.get(diag.constraint_name or "")
    if cls is None:
        return exc
    return cls(
        diag.message_primary or str(exc),
        detail=diag.message_detail,
        hint=diag.message_hint,
        constraint=diag.constraint_name,
    )
