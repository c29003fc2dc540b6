from typing import assert_type

from case_embed import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    h.execute("INSERT INTO authors VALUES (1, 'Ann'), (2, 'Bob')")
    h.execute("INSERT INTO books VALUES (10, 1, 'A', 2001), (11, 2, 'B', NULL), (12, 1, 'C', 1999)")
    rows = h.check(
        lambda: query.books_with_authors(h.conn), query.BOOKS_WITH_AUTHORS, embeds=True
    )
    assert_type(rows, list[query.BooksWithAuthorsRow])
    first = rows[0]
    assert_type(first.book, models.Book)
    assert_type(first.author, models.Author)
    assert first.id == 10 and first.id_2 == 1
    assert first.book == models.Book(10, 1, "A", 2001)
    assert first.author == models.Author(1, "Ann")
    one = h.check(
        lambda: query.book_with_author(h.conn, id=11),
        query.BOOK_WITH_AUTHOR,
        (11,),
        fetch="one",
        embeds=True,
    )
    assert one is not None and one.book.year is None and one.name == "Bob"


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(
        lambda: query.books_with_authors_async(h.conn), query.BOOKS_WITH_AUTHORS, embeds=True
    )
    assert [r.author.name for r in rows] == ["Ann", "Bob", "Ann"]
