from typing import assert_type

from case_table_rowtype import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    old, new = models.User(1, "a@x"), models.User(1, "b@x")
    h.check(
        lambda: query.add_audit(h.conn, id=1, before=old, after=new),
        query.ADD_AUDIT,
        (1, old, new),
        fetch="none",
        mutates=True,
    )
    h.check(
        lambda: query.add_audit(h.conn, id=2, before=None, after=old),
        query.ADD_AUDIT,
        (2, None, old),
        fetch="none",
        mutates=True,
    )
    rows = h.check(lambda: query.audit(h.conn), query.AUDIT)
    assert_type(rows, list[models.Audit])
    assert rows[0].after == new and type(rows[0].after) is models.User
    assert rows[1].before is None


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(lambda: query.audit_async(h.conn), query.AUDIT)
    assert_type(rows[0].before, models.User | None)
