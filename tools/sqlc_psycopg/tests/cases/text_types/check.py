from typing import assert_type

from case_text_types import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    args = (1, "héllo 'quoted' \"dq\" \\ ", "short", "ab", "any", "nm", "<a>x</a>", "z")
    row = h.check(
        lambda: query.put_text(
            h.conn, id=1, t=args[1], v=args[2], c=args[3], vv=args[4], n=args[5], x=args[6], q=args[7]
        ),
        query.PUT_TEXT,
        args,
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Text)
    assert row is not None and row.c == "ab " and row.x == "<a>x</a>"
    joined = h.check(
        lambda: query.concat(h.conn, suffix="!", id=1), query.CONCAT, ("!", 1), fetch="one"
    )
    assert joined is not None and joined.joined.endswith("short!")
    assert_type(joined.len, int)


async def check_async(h: AsyncHarness) -> None:
    joined = await h.check(
        lambda: query.concat_async(h.conn, suffix="?", id=1), query.CONCAT, ("?", 1), fetch="one"
    )
    assert joined is not None and joined.upper.startswith("HÉLLO")
