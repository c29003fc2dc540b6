import inspect
from typing import assert_type

from case_unnamed_params import query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    for a, b in ((1, 2), (2, 1), (3, 3)):
        h.check(
            lambda: query.add_pair(h.conn, a=a, b=b), query.ADD_PAIR, (a, b), fetch="none",
            mutates=True,
        )
    assert list(inspect.signature(query.between).parameters) == ["conn", "a", "a_2"]
    rows = h.check(lambda: query.between(h.conn, a=1, a_2=2), query.BETWEEN, (1, 2))
    assert rows == [(1, 2)]
    same = h.check(lambda: query.same_name(h.conn, a=1, a_2=3), query.SAME_NAME, (1, 3))
    assert_type(same, list[query.SameNameRow])
    assert same[0]._fields == ("a", "a_2")
    lit = h.check(lambda: query.literal(h.conn, p1=41, p2="x"), query.LITERAL, (41, "x"), fetch="one")
    assert lit == (42, "x")


async def check_async(h: AsyncHarness) -> None:
    lit = await h.check(
        lambda: query.literal_async(h.conn, p1=0, p2=""), query.LITERAL, (0, ""), fetch="one"
    )
    assert lit is not None and lit.next == 1
