import datetime as dt
from decimal import Decimal
from typing import assert_type

from psycopg.types.multirange import Multirange
from psycopg.types.range import Range

from case_ranges import models, query

from tests.harness import AsyncHarness, Harness

UTC = dt.timezone.utc


def check(h: Harness) -> None:
    args: tuple[object, ...] = (
        1,
        Range(1, 10),
        Range(None, 2**40, "(]"),
        Range(Decimal("1.5"), Decimal("2.5"), "[]"),
        Range(dt.date(2024, 1, 1), dt.date(2024, 1, 8)),
        Range(dt.datetime(2024, 1, 1, tzinfo=UTC), None),
        Range(empty=True),
        Multirange([Range(1, 3), Range(5, 7)]),
    )
    row = h.check(
        lambda: query.put_booking(
            h.conn, id=1, seats=Range(1, 10), big=Range(None, 2**40, "(]"),
            price=Range(Decimal("1.5"), Decimal("2.5"), "[]"),
            stay=Range(dt.date(2024, 1, 1), dt.date(2024, 1, 8)),
            during=Range(dt.datetime(2024, 1, 1, tzinfo=UTC), None), naive=Range(empty=True),
            gaps=Multirange([Range(1, 3), Range(5, 7)]),
        ),
        query.PUT_BOOKING,
        args,
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Booking)
    assert row is not None
    assert_type(row.seats, Range[int])
    assert_type(row.gaps, Multirange[int] | None)
    rows = h.check(
        lambda: query.overlapping(h.conn, seats=Range(5, 6)), query.OVERLAPPING, (Range(5, 6),)
    )
    assert rows == [(1, Range(1, 10))]


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(
        lambda: query.overlapping_async(h.conn, seats=Range(20, 30)),
        query.OVERLAPPING,
        (Range(20, 30),),
    )
    assert rows == []
