import inspect
from decimal import Decimal
from typing import assert_type

import psycopg
import pytest

from case_python_api import bound, models, query

from tests.harness import AsyncHarness, Harness


class Refused(Exception):
    """What the error hook of the bound classes turns a check violation into."""


def hook(exc: psycopg.Error) -> BaseException:
    return Refused(exc.sqlstate) if exc.sqlstate == "23514" else exc


def check(h: Harness) -> None:
    item = h.check(
        lambda: query.put_item(h.conn, id=1, name="pen"),
        query.PUT_ITEM,
        (1, "pen", None, None),
        fetch="one",
        mutates=True,
    )
    assert_type(item, models.Item)
    assert_type(item.list_, list[int])  # a field named list would hide the builtin
    assert item == (1, "pen", None, Decimal(0), [])
    params = inspect.signature(query.put_item).parameters
    assert [(n, p.default) for n, p in params.items() if n != "conn"] == [
        ("id", inspect.Parameter.empty),
        ("name", inspect.Parameter.empty),
        ("note", None),
        ("price", None),
    ]
    assert query.put_item_params(id=2, name="ink", price=Decimal(3)) == (2, "ink", None, Decimal(3))
    h.check(lambda: query.put_item(h.conn, id=2, name="ink", note="blue", price=Decimal(3)),
            query.PUT_ITEM, (2, "ink", "blue", Decimal(3)), fetch="one", mutates=True)
    got = h.check(lambda: query.get_item(h.conn, id=2), query.GET_ITEM, (2,), fetch="one")
    assert_type(got, models.Item)
    with pytest.raises(models.NoRowError, match="GetItem returned no row"):
        query.get_item(h.conn, id=99)
    h.conn.rollback()
    found = h.check(lambda: query.find_item(h.conn, name="ink"), query.FIND_ITEM, ("ink",), fetch="one")
    assert_type(found, models.Item | None)
    none = h.check(lambda: query.find_item(h.conn, name="no"), query.FIND_ITEM, ("no",), fetch="one")
    assert none is None
    name = h.check(lambda: query.item_name(h.conn, id=1), query.ITEM_NAME, (1,), fetch="one", value=str)
    assert_type(name, str | None)
    assert name == "pen" and query.item_name(h.conn, id=9) is None
    rows = h.check(lambda: query.list_(h.conn, limit=5), query.LIST, (5,))
    assert_type(rows, list[query.ListRow])
    assert [r.name for r in rows] == ["pen", "ink"]
    streamed = h.check(lambda: list(query.list_iter_2(h.conn, limit=1)), query.LIST, (1,))
    assert [r.id for r in streamed] == [1]
    ids = h.check(lambda: query.list_iter(h.conn), query.LIST_ITER, value=int)
    assert_type(ids, list[int])
    stats = h.check(lambda: query.stats(h.conn), query.STATS, fetch="one")
    assert_type(stats.n, int)
    assert_type(stats.total, Decimal)
    assert_type(stats.longest_note, str | None)
    assert stats == (2, Decimal(3), "blue")
    assert h.check(lambda: query.credits_(h.conn), query.CREDITS, fetch="one", value=int) == 2
    # The bound classes: the module's queries on one connection, errors through the hook.
    q = bound.Queries(h.conn, on_error=hook)
    assert_type(q.query.get_item(id=1), models.Item)
    assert q.query.find_item(name="none") is None
    assert [r.id for r in q.query.list_iter_2(limit=2)] == [1, 2]
    with pytest.raises(Refused) as refused:
        q.query.put_item(id=3, name="bad", price=Decimal(-1))
    assert isinstance(refused.value.__cause__, psycopg.errors.CheckViolation)
    h.conn.rollback()
    with pytest.raises(psycopg.errors.UniqueViolation):  # not mapped: raised unchanged
        q.query.put_item(id=1, name="again")
    h.conn.rollback()
    with pytest.raises(psycopg.errors.UniqueViolation):
        query.QueryQueries(h.conn).put_item(id=1, name="no hook")
    h.conn.rollback()


async def check_async(h: AsyncHarness) -> None:
    got = await h.check(lambda: query.get_item_async(h.conn, id=1), query.GET_ITEM, (1,), fetch="one")
    assert_type(got, models.Item)
    q = bound.AsyncQueries(h.conn, on_error=hook)
    assert [r async for r in q.query.list_iter_2(limit=5)] == [(1, "pen"), (2, "ink")]
    with pytest.raises(Refused):
        await q.query.put_item(id=3, name="bad", price=Decimal(-1))
    await h.conn.rollback()
    with pytest.raises(models.NoRowError):
        await q.query.get_item(id=42)
    await h.conn.rollback()
