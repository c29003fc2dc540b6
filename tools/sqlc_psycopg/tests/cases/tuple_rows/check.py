import pytest
import datetime
import decimal
import ipaddress
import uuid
from typing import assert_type

from psycopg.types.json import Jsonb

from case_tuple_rows import models, query

from tests.harness import AsyncHarness, Harness, collect

OWNER = uuid.UUID("8d0c9a8e-2f7a-4c49-9d3f-4a3b7e2f1c00")
SEEN = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)


def put(h: Harness, id: int, price: decimal.Decimal | None) -> query.PutThingRow | None:
    values = (
        id, "class-" + str(id), OWNER, price, 0.5, True, b"\x00\xff", Jsonb({"k": [1, None]}), ["a", "b"],
        [[1, 2], [3, 4]], [models.Mood.CALM, models.Mood.BUSY], models.Mood.BUSY,
        models.Point2(1, 2), SEEN, datetime.date(2024, 5, 1), datetime.timedelta(hours=3),
        ipaddress.ip_address("10.0.0.1"),
    )
    return h.check(
        lambda: query.put_thing(
            h.conn, id=id, class_="class-" + str(id), owner=OWNER, price=price, ratio=0.5,
            flag=True, blob=b"\x00\xff", doc={"k": [1, None]}, tags=["a", "b"],
            grid=[[1, 2], [3, 4]], moods=[models.Mood.CALM, models.Mood.BUSY],
            mood=models.Mood.BUSY, at=models.Point2(1, 2), seen=SEEN,
            day=datetime.date(2024, 5, 1), span=datetime.timedelta(hours=3),
            addr=ipaddress.ip_address("10.0.0.1"),
        ),
        query.PUT_THING,
        values,
        fetch="one",
        mutates=True,
        row=query.PutThingRow,
    )


def check(h: Harness) -> None:
    row = put(h, 1, decimal.Decimal("9.99"))
    assert row is not None and type(row) is tuple
    id, class_, owner, price, ratio, flag, blob, doc, tags, grid, moods, mood, at, *rest = row
    assert_type(price, decimal.Decimal | None)
    assert_type(moods, list[models.Mood])
    assert_type(at, models.Point2 | None)
    assert moods == [models.Mood.CALM, models.Mood.BUSY] and at == models.Point2(1, 2)
    h.conn.commit()
    put(h, 2, None)
    h.conn.commit()
    got = h.check(lambda: query.get_thing(h.conn, id=2), query.GET_THING, (2,), fetch="one",
                  row=query.GetThingRow)
    assert got is not None and got[3] is None
    with pytest.raises(models.NoRowError, match="GetThing"):
        query.get_thing(h.conn, id=99)
    h.conn.rollback()
    rows = h.check(lambda: query.list_things(h.conn, first=1), query.LIST_THINGS, (1,),
                   row=query.ListThingsRow)
    assert_type(rows, list[query.ListThingsRow])
    assert_type(rows[0][5], ipaddress.IPv4Address | ipaddress.IPv6Address | None)
    assert [r[0] for r in rows] == [1, 2] and all(type(r) is tuple for r in rows)
    streamed = h.check(lambda: list(query.list_things_iter(h.conn, first=2)), query.LIST_THINGS,
                       (2,), row=query.ListThingsRow)
    assert [r[1] for r in streamed] == ["class-2"]
    n = h.check(lambda: query.count_things(h.conn), query.COUNT_THINGS, fetch="one", value=int)
    assert_type(n, int)
    assert n == 2


async def check_async(h: AsyncHarness) -> None:
    await h.raw.execute(
        "INSERT INTO things (id, class, owner, ratio, flag, doc, tags, moods, mood, seen, day, span)"
        " VALUES (7, 'c', gen_random_uuid(), 1, false, '[]', '{}', '{}', 'calm', now(),"
        " current_date, '1 day')"
    )
    await h.raw.commit()
    rows = await h.check(lambda: query.list_things_async(h.conn, first=7), query.LIST_THINGS,
                         (7,), row=query.ListThingsRow)
    assert rows == [(7, "c", None, [], None, None)]
    streamed = await h.check(lambda: collect(query.list_things_iter_async(h.conn, first=7)),
                             query.LIST_THINGS, (7,), row=query.ListThingsRow)
    assert streamed == rows
    one = await h.check(lambda: query.get_thing_async(h.conn, id=7), query.GET_THING, (7,),
                        fetch="one", row=query.GetThingRow)
    assert one is not None and one[11] is models.Mood.CALM
