from decimal import Decimal
from typing import assert_type

from case_arrays import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    cube = [[[Decimal(1), Decimal("2.5")]], [[Decimal(3), Decimal(4)]]]
    rows_in = [
        (1, [[1, 2], [3, 4]], ["a", "b,c", 'd"e'], [True, False], cube),
        (2, [[5]], None, [], None),
        (3, [], [], [], []),
    ]
    for r in rows_in:
        row = h.check(
            lambda: query.put_grid(h.conn, id=r[0], cells=r[1], names=r[2], flags=r[3], cube=r[4]),
            query.PUT_GRID,
            r,
            fetch="one",
            mutates=True,
        )
        assert_type(row, models.Grid)
        assert_type(row.cells if row else None, list[list[int]])
        assert row is not None and row.cells == r[1]
    some = h.check(lambda: query.grids_by_ids(h.conn, ids=[3, 1, 9]), query.GRIDS_BY_IDS, ([3, 1, 9],))
    assert [r.id for r in some] == [1, 3]
    assert h.check(lambda: query.grids_by_ids(h.conn, ids=[]), query.GRIDS_BY_IDS, ([],)) == []
    firsts = h.check(lambda: query.first_cells(h.conn), query.FIRST_CELLS)
    assert firsts[0].first_row == [[1, 2]]


async def check_async(h: AsyncHarness) -> None:
    some = await h.check(
        lambda: query.grids_by_ids_async(h.conn, ids=[2]), query.GRIDS_BY_IDS, ([2],)
    )
    assert some[0].names is None


def _typed(row: query.FirstCellsRow) -> None:
    # A query-scoped override made n_rows nullable: array_length of an empty array is NULL.
    assert_type(row.n_rows, int | None)
