from decimal import Decimal
from typing import assert_type

import psycopg
import pytest

from case_domains import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    levels = [models.Level.LOW, models.Level.HIGH]
    args = (1, "a@b.c", Decimal("10.5"), models.Level.HIGH, ["x@y"], levels, [[1, 2], [3, 4]])
    row = h.check(
        lambda: query.put_account(
            h.conn, id=1, contact="a@b.c", balance=Decimal("10.5"), prio=models.Level.HIGH,
            backups=["x@y"], levels=levels, steps=[[1, 2], [3, 4]],
        ),
        query.PUT_ACCOUNT,
        args,
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Account)
    assert row is not None and row.balance == Decimal("10.5000") and row.prio is models.Level.HIGH
    assert_type(row.id, int)
    assert_type(row.balance, Decimal)
    assert_type(row.steps, list[list[int]] | None)
    # Arrays of domains have their own array type: register_types makes them lists too.
    assert row.backups == ["x@y"] and row.levels == levels and row.steps == [[1, 2], [3, 4]]
    with pytest.raises(psycopg.errors.CheckViolation):
        query.put_account(
            h.conn, id=2, contact="nope", balance=Decimal(1), prio=None, backups=None, levels=None,
            steps=None,
        )
    h.conn.rollback()
    rich = h.check(
        lambda: query.rich_accounts(h.conn, min=Decimal(1)), query.RICH_ACCOUNTS, (Decimal(1),)
    )
    assert rich == [(1, Decimal("10.5000"))]


async def check_async(h: AsyncHarness) -> None:
    rich = await h.check(
        lambda: query.rich_accounts_async(h.conn, min=Decimal(100)),
        query.RICH_ACCOUNTS,
        (Decimal(100),),
    )
    assert rich == []
