from decimal import Decimal
from typing import assert_type

from psycopg.types.json import Jsonb

from case_copyfrom import models, query

from tests.harness import AsyncHarness, Harness

Color = models.Color


def check(h: Harness) -> None:
    rows = [
        query.CopyItemsParams(1, "one", None, [Color.RED], {"a": [1, 2]}, b"\x00\x01", Decimal("1.50")),
        query.CopyItemsParams(2, "two", "n", [], {"b": None}, None, Decimal("2")),
    ]
    raw_rows = [(*r[:4], Jsonb(r.attrs), *r[5:]) for r in rows]
    n = h.check(
        lambda: query.copy_items(h.conn, rows),
        query.COPY_ITEMS,
        raw_rows,
        fetch="copy",
        mutates=True,
    )
    assert_type(n, int)
    assert n == 2
    items = h.check(lambda: query.list_items(h.conn), query.LIST_ITEMS)
    assert_type(items, list[models.Item])
    assert items[0].colors == [Color.RED] and items[0].attrs == {"a": [1, 2]}
    assert items[1].payload is None and items[1].price == Decimal("2.00")
    assert query.COPY_ITEMS.startswith("COPY items (id, label")


async def check_async(h: AsyncHarness) -> None:
    rows = [query.CopyItemsParams(3, "three", None, [Color.BLUE, Color.GREEN], [1], b"", Decimal(3))]
    n = await h.check(
        lambda: query.copy_items_async(h.conn, rows),
        query.COPY_ITEMS,
        [(*r[:4], Jsonb(r.attrs), *r[5:]) for r in rows],
        fetch="copy",
        mutates=True,
    )
    assert n == 1
    items = await h.check(lambda: query.list_items_async(h.conn), query.LIST_ITEMS)
    assert items[-1].colors == [Color.BLUE, Color.GREEN]
