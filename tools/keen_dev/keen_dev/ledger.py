"""Credit-ledger activity for operations tests (backup, PITR, faults).

On a raw superuser connection, writes go through the keen functions (`register_user`,
`add_credits`, `deduct_credits`) as `keen_app` with a tenant context when the database has
them (a database built before those functions existed gets the same rows written directly,
account locked, entry_no and balances carried forward). Through a `keen_sql.Database`,
`credit()` and `spend()` call the bound generated queries (`q.credits.…`), as services do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
from keen_queries.models import CreditTransaction

from keen_sql.context import TenantContext
from keen_sql.database import Queries

PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$" + "h" * 43


@contextmanager
def as_tenant(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> Iterator[None]:
    """One transaction on an autocommit superuser connection, acting as keen_app for a tenant."""
    with conn.transaction():
        TenantContext().set(conn, user_id)
        yield


def make_user(conn: psycopg.Connection[Any], tag: str | None = None) -> uuid.UUID:
    """Create a user with its credit account through keen.register_user; return its id."""
    tag = tag or uuid.uuid4().hex[:12]
    row = conn.execute(
        "SELECT keen.register_user(p_email => %s, p_username => %s, p_password_hash => %s)",
        (f"{tag}@example.com", f"user_{tag}", PASSWORD_HASH),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def new_user(url: str) -> uuid.UUID:
    """`make_user` on its own autocommit connection to the database at `url`."""
    with psycopg.connect(url, autocommit=True) as conn:
        return make_user(conn)


def post(conn: psycopg.Connection[Any], amount: Decimal, key: str) -> None:
    """Post one ledger entry for the transaction's tenant: a purchase if positive, else usage.

    Runs inside the caller's tenant transaction (context set), as keen_app or superuser.
    """
    if amount > 0:
        conn.execute(
            "SELECT * FROM keen.add_credits(p_amount => %s, p_transaction_type => 'purchase',"
            " p_description => 'ops drill', p_idempotency_key => %s)",
            (amount, key),
        )
    else:
        conn.execute(
            "SELECT * FROM keen.deduct_credits(p_amount => %s, p_description => 'ops drill',"
            " p_idempotency_key => %s)",
            (-amount, key),
        )


def credit(q: Queries, amount: Decimal, key: str | None = None) -> CreditTransaction | None:
    """Buy `amount` credits in a `Database` tenant transaction, the way services do."""
    return q.credits.add_credits(
        amount=amount,
        transaction_type=None,
        description="ops drill",
        idempotency_key=key,
        stripe_payment_intent_id=None,
        metadata=None,
    )


def spend(q: Queries, amount: Decimal, key: str) -> CreditTransaction | None:
    """Charge `amount` credits of usage in a `Database` tenant transaction."""
    return q.credits.deduct_credits(
        amount=amount,
        session_id=None,
        description="ops drill",
        idempotency_key=key,
    )


def activity(conn: psycopg.Connection[Any], users: list[uuid.UUID], tag: str, rounds: int) -> None:
    """Post `rounds` credit-then-debit pairs for each user, one transaction per entry."""
    for n in range(rounds):
        for user_id in users:
            with as_tenant(conn, user_id):
                post(conn, Decimal("10.5000"), f"{tag}-{user_id}-{n}-in")
            with as_tenant(conn, user_id):
                post(conn, Decimal("-2.2500"), f"{tag}-{user_id}-{n}-out")


def ledger(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Every ledger row, every column, ordered by account and entry_no (as a superuser)."""
    return conn.execute(
        "SELECT * FROM keen.credit_transactions ORDER BY account_id, entry_no"
    ).fetchall()


def idempotency_keys(conn: psycopg.Connection[Any]) -> set[str]:
    """The idempotency keys present in the ledger."""
    rows = conn.execute(
        "SELECT idempotency_key FROM keen.credit_transactions WHERE idempotency_key IS NOT NULL"
    ).fetchall()
    return {r[0] for r in rows}
