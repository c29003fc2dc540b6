import inspect
from typing import Any, assert_type

from case_fallback_types import query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    h.check(
        lambda: query.put_span(h.conn, id=1, name="one", r="[1.5,2.5)"),
        query.PUT_SPAN,
        (1, "one", "[1.5,2.5)"),
        fetch="none",
        mutates=True,
    )
    row = h.check(lambda: query.get_span(h.conn, id=1), query.GET_SPAN, (1,), fetch="one")
    assert_type(row.r, Any)
    assert row.r == "[1.5,2.5)"  # psycopg has no loader for it: the text
    up = h.check(lambda: query.upper(h.conn, id=1), query.UPPER, (1,), fetch="one")
    assert_type(up.u, Any)
    assert up.u == "ONE"
    # Parameters of an unknown type are `object`: anything psycopg can adapt.
    assert inspect.signature(query.put_span).parameters["r"].annotation == "object"
    source = inspect.getsource(query)
    assert "r: typing.Any  # SQL type floatrange: no Python type known" in source
    assert "sqlc could not type it" in source


async def check_async(h: AsyncHarness) -> None:
    row = await h.check(lambda: query.get_span_async(h.conn, id=1), query.GET_SPAN, (1,), fetch="one")
    assert row.id == 1
