from typing import LiteralString

from case_prepared import query

from tests.harness import AsyncHarness, Harness

PREPARED: LiteralString = "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1"


def _prepared(h: Harness, statement: str) -> int:
    with h.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement = %s", (statement,))
        row = cur.fetchone()
    h.conn.commit()
    assert row is not None
    return int(row[0])


def check(h: Harness) -> None:
    h.execute("INSERT INTO kv VALUES ('a', '1')")
    # The connection decides: prepare_threshold=None never prepares server-side ...
    h.conn.prepare_threshold = None
    for _ in range(4):
        h.check(lambda: query.get_value(h.conn, k="a"), query.GET_VALUE, ("a",), fetch="one", value=str)
    assert _prepared(h, query.GET_VALUE) == 0
    # ... and a threshold of 0 prepares from the first execution, without the code asking.
    h.conn.prepare_threshold = 0
    h.check(lambda: query.get_value(h.conn, k="a"), query.GET_VALUE, ("a",), fetch="one", value=str)
    assert _prepared(h, query.GET_VALUE) == 1
    query.put_value(h.conn, k="b", v="2")
    h.conn.commit()
    assert _prepared(h, query.PUT_VALUE) == 1


async def check_async(h: AsyncHarness) -> None:
    h.conn.prepare_threshold = 0
    row = await h.check(lambda: query.get_value_async(h.conn, k="b"), query.GET_VALUE, ("b",),
                        fetch="one", value=str)
    assert row == "2"
    async with h.conn.cursor() as cur:
        await cur.execute("SELECT count(*) FROM pg_prepared_statements")
        count = await cur.fetchone()
    assert count is not None and count[0] >= 1
