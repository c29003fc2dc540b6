from typing import assert_type

from case_misc_types import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    args = (1, True, "1010", "11", "12.50", "a b", "(1,2)", "08:00:2b:01:02:03", "0/16B3748")
    row = h.check(
        lambda: query.put_misc(
            h.conn, id=1, ok=True, p3="1010", p4="11", p5="12.50", p6="a b", p7="(1,2)",
            p8="08:00:2b:01:02:03", p9="0/16B3748",
        ),
        query.PUT_MISC,
        args,
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Misc)
    assert row is not None and row.ok is True and row.bits == "1010", row
    assert_type(row.cash, str | None)
    rows = h.check(lambda: query.truthy(h.conn, ok=True), query.TRUTHY, (True,))
    assert rows == [(1, False)]


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(lambda: query.truthy_async(h.conn, ok=False), query.TRUTHY, (False,))
    assert rows == []
