from decimal import Decimal
from typing import assert_type

from case_views import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    h.execute("INSERT INTO sales VALUES (1, 'eu', 1.5), (2, 'eu', 2), (3, 'us', 10)")
    rows = h.check(lambda: query.region_totals(h.conn), query.REGION_TOTALS)
    assert_type(rows, list[models.RegionTotal])
    assert [tuple(r) for r in rows] == [("eu", Decimal("3.5"), 2), ("us", Decimal(10), 1)]
    assert models.RegionTotal.__doc__ == "Sales summed per region."
    one = h.check(lambda: query.region_total(h.conn, region="us"), query.REGION_TOTAL, ("us",),
                  fetch="one", value=Decimal)
    assert_type(one, Decimal)
    assert one == Decimal(10)


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(lambda: query.region_totals_async(h.conn), query.REGION_TOTALS)
    assert len(rows) == 2
