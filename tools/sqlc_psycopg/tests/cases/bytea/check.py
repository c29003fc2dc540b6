from typing import assert_type

from case_bytea import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    data = bytes(range(256))
    row = h.check(
        lambda: query.put_blob(h.conn, id=1, data=data, maybe=None, parts=[b"a", b"\x00"]),
        query.PUT_BLOB,
        (1, data, None, [b"a", b"\x00"]),
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Blob)
    assert row is not None and row.data == data
    assert_type(row.data, bytes)
    digest = h.check(lambda: query.blob_digest(h.conn, id=1), query.BLOB_DIGEST, (1,), fetch="one")
    assert digest is not None and digest.size == 256 and len(digest.digest) == 32


async def check_async(h: AsyncHarness) -> None:
    row = await h.check(
        lambda: query.put_blob_async(h.conn, id=2, data=b"", maybe=b"m", parts=None),
        query.PUT_BLOB,
        (2, b"", b"m", None),
        fetch="one",
        mutates=True,
    )
    assert row is not None and row.maybe == b"m"
