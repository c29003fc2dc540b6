from typing import assert_type

from psycopg.types.json import Json, Jsonb

from case_json_jsonb import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    body: dict[str, object] = {"a": 1, "nested": {"list": [1, 2.5, None, "x", True]}}
    row = h.check(
        lambda: query.put_doc(h.conn, id=1, body={"a": 1, "nested": {"list": [1, 2.5, None, "x", True]}},
                              raw=[1, "two"], tags=[{"t": 1}, "s"]),
        query.PUT_DOC,
        (1, Jsonb(body), Json([1, "two"]), [Jsonb({"t": 1}), Jsonb("s")]),
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Doc)
    assert row is not None and row.body == body and row.tags == [{"t": 1}, "s"]
    # JSON null is not SQL NULL: a non-nullable json parameter given None stores 'null'.
    h.check(
        lambda: query.put_doc(h.conn, id=2, body=None, raw=None, tags=None),
        query.PUT_DOC,
        (2, Jsonb(None), None, None),
        fetch="one",
        mutates=True,
    )
    values = h.check(lambda: query.find_by_key(h.conn, key="a"), query.FIND_BY_KEY, ("a",))
    assert values == [(1, 1)]
    merged = h.check(
        lambda: query.merge_body(h.conn, patch={"b": [True]}, id=1),
        query.MERGE_BODY,
        (Jsonb({"b": [True]}), 1),
        fetch="one",
        mutates=True,
        value=object,
    )
    assert merged == {**body, "b": [True]}


async def check_async(h: AsyncHarness) -> None:
    values = await h.check(
        lambda: query.find_by_key_async(h.conn, key="b"), query.FIND_BY_KEY, ("b",)
    )
    assert values == [(1, [True])]
