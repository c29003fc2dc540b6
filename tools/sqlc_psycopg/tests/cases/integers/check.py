from typing import assert_type

from case_integers import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    args = (1, 2, -32768, 2147483647, -9223372036854775808, 4294967295, None)
    row = h.check(
        lambda: query.insert_nums(
            h.conn, id=1, big=2, s=args[2], i=args[3], b=args[4], o=args[5], n=args[6]
        ),
        query.INSERT_NUMS,
        args,
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Num)
    assert row is not None and row.b == -9223372036854775808 and row.o == 4294967295
    sums = h.check(lambda: query.sums(h.conn), query.SUMS, fetch="one")
    assert sums is not None and sums.c == 1
    total = h.check(lambda: query.add_ints(h.conn, a=7, b=2**40), query.ADD_INTS, (7, 2**40),
                    fetch="one", value=int)
    assert total == 7 + 2**40


async def check_async(h: AsyncHarness) -> None:
    total = await h.check(
        lambda: query.add_ints_async(h.conn, a=-1, b=-2), query.ADD_INTS, (-1, -2), fetch="one",
        value=int,
    )
    assert_type(total, int)
    assert total == -3
