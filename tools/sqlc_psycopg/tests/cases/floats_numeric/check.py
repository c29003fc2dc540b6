from decimal import Decimal
from typing import assert_type

from case_floats_numeric import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    values = [
        (1, 1.5, 2.25, None, Decimal("1.000000000000000000001"), Decimal("9.99"), Decimal("1.5")),
        (2, -0.5, 1e300, 3.0, Decimal("NaN"), None, None),
    ]
    for v in values:
        row = h.check(
            lambda: query.put_measure(
                h.conn, id=v[0], r=v[1], d=v[2], f=v[3], n=v[4], money_=v[5], dec=v[6]
            ),
            query.PUT_MEASURE,
            v,
            fetch="one",
            mutates=True,
        )
        assert_type(row, models.Measure)
    rows = h.check(
        lambda: query.scaled(h.conn, factor=Decimal(2), divisor=2.0),
        query.SCALED,
        (Decimal(2), 2.0),
    )
    assert_type(rows[0].scaled, Decimal)
    assert_type(rows[0].ratio, float)
    assert rows[0].scaled == Decimal("2.000000000000000000002")


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(
        lambda: query.scaled_async(h.conn, factor=Decimal("0.5"), divisor=4.0),
        query.SCALED,
        (Decimal("0.5"), 4.0),
    )
    assert rows[1].scaled.is_nan()
