from typing import assert_type

import psycopg
from psycopg.rows import TupleRow

from case_exec_commands import query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    for name in ("a1", "a2", "b1"):
        done = h.check(
            lambda: query.create_counter(h.conn, name=name),
            query.CREATE_COUNTER,
            (name,),
            fetch="none",
            mutates=True,
        )
        assert_type(done, None)
    n = h.check(
        lambda: query.bump_all(h.conn, prefix="a"),
        query.BUMP_ALL,
        ("a",),
        fetch="rowcount",
        mutates=True,
    )
    assert_type(n, int)
    assert n == 2
    assert h.fetch("SELECT name, value FROM counters ORDER BY name") == [
        ("a1", 1),
        ("a2", 1),
        ("b1", 0),
    ]
    res = h.check(
        lambda: query.delete_counter(h.conn, name="b1"),
        query.DELETE_COUNTER,
        ("b1",),
        fetch="status",
        mutates=True,
    )
    assert_type(res, psycopg.RawCursor[TupleRow])
    assert res.statusmessage == "DELETE 1"
    h.check(lambda: query.reset_all(h.conn), query.RESET_ALL, fetch="none", mutates=True)
    assert h.fetch("SELECT sum(value)::int FROM counters") == [(0,)]


async def check_async(h: AsyncHarness) -> None:
    await h.check(
        lambda: query.create_counter_async(h.conn, name="c1"),
        query.CREATE_COUNTER,
        ("c1",),
        fetch="none",
        mutates=True,
    )
    n = await h.check(
        lambda: query.bump_all_async(h.conn, prefix="c"),
        query.BUMP_ALL,
        ("c",),
        fetch="rowcount",
        mutates=True,
    )
    assert n == 1
    res = await h.check(
        lambda: query.delete_counter_async(h.conn, name="zz"),
        query.DELETE_COUNTER,
        ("zz",),
        fetch="status",
        mutates=True,
    )
    assert_type(res, psycopg.AsyncRawCursor[TupleRow])
    assert res.rowcount == 0
