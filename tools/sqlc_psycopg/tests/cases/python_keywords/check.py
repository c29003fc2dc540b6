from typing import assert_type

from case_python_keywords import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    h.check(
        lambda: query.insert_odd(
            h.conn,
            class_=1,
            from_="f",
            import_=None,
            def_=True,
            count=3,
            index=None,
            private_="p",
            Mixed_Case="m",
            v1st_="first",
            match_="m",
            None_="n",
        ),
        query.INSERT_ODD,
        (1, "f", None, True, 3, None, "p", "m", "first", "m", "n"),
        fetch="none",
        mutates=True,
    )
    row = h.check(lambda: query.get_odd(h.conn, class_=1), query.GET_ODD, (1,), fetch="one")
    assert_type(row, models.OddTable)
    assert row is not None
    assert_type(row.count, int)
    assert (row.class_, row.from_, row.def_, row.count, row.private_) == (1, "f", True, 3, "p")
    assert (row.Mixed_Case, row.v1st_, row.match_, row.None_) == ("m", "first", "m", "n")
    rows = h.check(lambda: query.lambda_(h.conn, rows_=0), query.LAMBDA, (0,))
    assert_type(rows, list[query.LambdaRow])
    assert rows[0].lambda_ == 1 and rows[0].rows == 3 and rows[0].conn == "f"


async def check_async(h: AsyncHarness) -> None:
    row = await h.check(
        lambda: query.get_odd_async(h.conn, class_=1), query.GET_ODD, (1,), fetch="one"
    )
    assert row is not None and row.import_ is None
