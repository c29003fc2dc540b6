from decimal import Decimal
from typing import assert_type

from psycopg.types.json import Json

from case_overrides_column import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    row = h.check(
        lambda: query.put_order(h.conn, id=1, note="x", total=5, meta=[1, 2]),
        query.PUT_ORDER,
        (1, "x", 5, Json([1, 2])),
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Order)
    assert row is not None
    assert_type(row.note, str)
    assert_type(row.meta, list[int] | None)
    assert row.meta == [1, 2] and row.total == Decimal(5)
    totals = h.check(
        lambda: query.order_totals(h.conn, note="nothing"), query.ORDER_TOTALS, ("nothing",),
        fetch="one",
    )
    assert totals is not None
    assert_type(totals.biggest, Decimal | None)
    assert totals.n == 0 and totals.biggest is None


async def check_async(h: AsyncHarness) -> None:
    totals = await h.check(
        lambda: query.order_totals_async(h.conn, note="x"), query.ORDER_TOTALS, ("x",),
        fetch="one",
    )
    assert totals is not None and totals.biggest == Decimal(5)
