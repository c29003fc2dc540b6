from typing import assert_type

from case_one_and_many import models, query

from tests.harness import AsyncHarness, Harness, collect


def check(h: Harness) -> None:
    h.execute("INSERT INTO authors VALUES (1, 'Ann', 'x'), (2, 'Bob', NULL), (3, 'Al', NULL)")
    row = h.check(lambda: query.get_author(h.conn, id=1), query.GET_AUTHOR, (1,), fetch="one")
    assert_type(row, models.Author | None)
    assert row == models.Author(id=1, name="Ann", bio="x")
    missing = h.check(lambda: query.get_author(h.conn, id=9), query.GET_AUTHOR, (9,), fetch="one")
    assert missing is None
    rows = h.check(lambda: query.list_authors(h.conn, prefix="A"), query.LIST_AUTHORS, ("A",))
    assert_type(rows, list[query.ListAuthorsRow])
    assert [r.name for r in rows] == ["Ann", "Al"]
    streamed = h.check(
        lambda: list(query.list_authors_iter(h.conn, prefix="A")), query.LIST_AUTHORS, ("A",)
    )
    assert streamed == rows
    none = h.check(lambda: query.list_authors(h.conn, prefix="Z"), query.LIST_AUTHORS, ("Z",))
    assert none == []
    n = h.check(lambda: query.count_authors(h.conn), query.COUNT_AUTHORS, fetch="one", value=int)
    assert n == 3
    assert (query.get_author.__doc__ or "").startswith("One author by id; None when there is none.")
    assert models.Author.__doc__ is not None and "A short biography." in models.Author.__doc__


async def check_async(h: AsyncHarness) -> None:
    row = await h.check(
        lambda: query.get_author_async(h.conn, id=2), query.GET_AUTHOR, (2,), fetch="one"
    )
    assert_type(row, models.Author | None)
    assert row is not None and row.bio is None
    rows = await h.check(
        lambda: query.list_authors_async(h.conn, prefix="A"), query.LIST_AUTHORS, ("A",)
    )
    assert_type(rows, list[query.ListAuthorsRow])
    streamed = await h.check(
        lambda: collect(query.list_authors_iter_async(h.conn, prefix="A")),
        query.LIST_AUTHORS,
        ("A",),
    )
    assert streamed == rows
