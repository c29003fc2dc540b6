import uuid
from typing import assert_type

from case_uuids import models, query

from tests.harness import AsyncHarness, Harness

A = uuid.UUID("00000000-0000-0000-0000-00000000000a")
B = uuid.UUID("00000000-0000-0000-0000-00000000000b")
OWNER = uuid.UUID("12345678-1234-5678-1234-567812345678")


def check(h: Harness) -> None:
    row = h.check(
        lambda: query.put_token(h.conn, id=A, owner=OWNER, aliases=[B]),
        query.PUT_TOKEN,
        (A, OWNER, [B]),
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Token)
    assert row is not None and row.aliases == [B]
    ids = h.check(lambda: query.tokens_of(h.conn, owners=[OWNER]), query.TOKENS_OF, ([OWNER],),
                  value=uuid.UUID)
    assert_type(ids, list[uuid.UUID])
    assert ids == [A]
    assert h.check(lambda: query.tokens_of(h.conn, owners=[]), query.TOKENS_OF, ([],),
                   value=uuid.UUID) == []


async def check_async(h: AsyncHarness) -> None:
    ids = await h.check(
        lambda: query.tokens_of_async(h.conn, owners=[OWNER, B]), query.TOKENS_OF, ([OWNER, B],),
        value=uuid.UUID,
    )
    assert ids[0] == A
