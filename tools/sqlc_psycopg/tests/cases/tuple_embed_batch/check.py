from typing import assert_type

from case_tuple_embed_batch import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    authors = [query.AddAuthorsParams(1, "Ann"), query.AddAuthorsParams(2, "Bob")]
    copied = query.add_authors(h.conn, authors)
    h.conn.commit()
    assert copied == 2
    books = [query.AddBookParams(10, 1, "A"), query.AddBookParams(11, 2, "B")]
    added = h.check(lambda: query.add_book(h.conn, books), query.ADD_BOOK,
                    [tuple(b) for b in books], fetch="batchone", mutates=True,
                    row=query.AddBookRow)
    assert_type(added, list[query.AddBookRow])
    assert added == [(10, "A"), (11, "B")]
    h.conn.commit()
    h.execute("INSERT INTO books VALUES (12, 1, 'C')")
    of = [query.BooksOfParams(1), query.BooksOfParams(3)]
    many = h.check(lambda: query.books_of(h.conn, of), query.BOOKS_OF, [(1,), (3,)],
                   fetch="batchmany", row=query.BooksOfRow)
    assert_type(many, list[list[query.BooksOfRow]])
    assert many == [[(10, "A"), (12, "C")], []]
    rows = h.check(lambda: query.books_with_authors(h.conn), query.BOOKS_WITH_AUTHORS,
                   embeds=True, row=query.BooksWithAuthorsRow)
    assert_type(rows[0][0], models.Book)
    assert rows[0] == (models.Book(10, 1, "A"), "Ann") and type(rows[0]) is tuple


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(lambda: query.books_with_authors_async(h.conn),
                         query.BOOKS_WITH_AUTHORS, embeds=True, row=query.BooksWithAuthorsRow)
    assert [r[0].title for r in rows] == ["A", "B", "C"]
