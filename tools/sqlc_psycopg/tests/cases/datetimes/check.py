import datetime as dt
from typing import assert_type

from case_datetimes import models, query

from tests.harness import AsyncHarness, Harness

UTC = dt.timezone.utc
AT = dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def check(h: Harness) -> None:
    args = (
        1,
        AT,
        dt.datetime(2000, 1, 1, 12, 0),
        dt.date(2024, 2, 29),
        dt.time(8, 30),
        dt.time(9, 15, tzinfo=UTC),
        dt.timedelta(days=1, seconds=5, microseconds=7),
    )
    row = h.check(
        lambda: query.put_slot(
            h.conn, id=1, at=args[1], local_at=args[2], day=args[3], clock=args[4],
            clock_tz=args[5], span=args[6],
        ),
        query.PUT_SLOT,
        args,
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Slot)
    assert row is not None and row.at == AT and row.at.tzinfo is not None
    assert_type(row.span, dt.timedelta)
    assert row.local_at is not None and row.local_at.tzinfo is None
    rows = h.check(
        lambda: query.slots_between(h.conn, since=AT - dt.timedelta(1), until=dt.date(2025, 1, 1)),
        query.SLOTS_BETWEEN,
        (AT - dt.timedelta(1), dt.date(2025, 1, 1)),
    )
    assert rows[0].ends == AT + dt.timedelta(days=1, seconds=5, microseconds=7)


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(
        lambda: query.slots_between_async(h.conn, since=AT, until=dt.date(2024, 2, 29)),
        query.SLOTS_BETWEEN,
        (AT, dt.date(2024, 2, 29)),
    )
    assert_type(rows[0].day, dt.date)
