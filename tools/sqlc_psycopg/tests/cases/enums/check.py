from typing import assert_type

from case_enums import models, query

from tests.harness import AsyncHarness, Harness

Status = models.Status


def check(h: Harness) -> None:
    assert [m.value for m in Status] == ["draft", "in review", "published", "2nd-pass", "Draft"]
    assert [m.name for m in Status] == ["DRAFT", "IN_REVIEW", "PUBLISHED", "V2ND_PASS", "DRAFT_2"]
    assert Status.__doc__ == "Where an article stands."
    for i, (s, p) in enumerate([(Status.DRAFT, None), (Status.IN_REVIEW, Status.DRAFT_2)], 1):
        row = h.check(
            lambda: query.put_article(h.conn, id=i, status=s, prev=p),
            query.PUT_ARTICLE,
            (i, s, p),
            fetch="one",
            mutates=True,
        )
        assert_type(row, models.Article)
        assert row is not None and row.status is s and row.prev is p
    rows = h.check(
        lambda: query.by_status(h.conn, status=Status.IN_REVIEW),
        query.BY_STATUS,
        (Status.IN_REVIEW,),
    )
    assert rows == [(2, Status.IN_REVIEW)]
    promoted = h.check(
        lambda: query.promote(h.conn, next=Status.V2ND_PASS, id=1),
        query.PROMOTE,
        (Status.V2ND_PASS, 1),
        fetch="one",
        mutates=True,
    )
    assert promoted is not None and promoted.prev is Status.DRAFT
    assert promoted.status is Status.V2ND_PASS


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(
        lambda: query.by_status_async(h.conn, status=Status.V2ND_PASS),
        query.BY_STATUS,
        (Status.V2ND_PASS,),
    )
    assert_type(rows[0].status, Status)
    assert rows[0].status is Status.V2ND_PASS
