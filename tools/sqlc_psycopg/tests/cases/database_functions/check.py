from decimal import Decimal
from typing import assert_type

from case_database_functions import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    for i, amount in enumerate([Decimal("1.5"), Decimal("-0.25")], 1):
        row = h.check(
            lambda: query.post(h.conn, p_id=i, p_account="acc", p_amount=amount),
            query.POST,
            (i, "acc", amount),
            fetch="one",
            mutates=True,
        )
        assert_type(row, models.Ledger)
    balance = h.check(
        lambda: query.balance_of(h.conn, p_account="acc"), query.BALANCE_OF, ("acc",), fetch="one",
        value=Decimal,
    )
    assert_type(balance, Decimal)
    assert balance == Decimal("1.25")
    lines = h.check(
        lambda: query.statement_of(h.conn, p_account="acc"), query.STATEMENT_OF, ("acc",)
    )
    assert_type(lines, list[query.StatementOfRow])
    assert [line.running for line in lines] == [Decimal("1.5"), Decimal("1.25")]
    doc = query.balance_of.__doc__ or ""
    assert "The sum of the account's entries (0 without any)." in doc
    assert "Posts an entry" in (query.post.__doc__ or "")


async def check_async(h: AsyncHarness) -> None:
    lines = await h.check(
        lambda: query.statement_of_async(h.conn, p_account="none"), query.STATEMENT_OF, ("none",)
    )
    assert lines == []
