from typing import assert_type

from psycopg.types.json import Jsonb

from case_batch_exec import query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    rows = [
        query.InsertEventParams(1, "a", {"x": 1}),
        query.InsertEventParams(2, "b", None),
        query.InsertEventParams(3, "c", [True, None]),
    ]
    raw = [(r.id, r.kind, None if r.data is None else Jsonb(r.data)) for r in rows]
    done = h.check(
        lambda: query.insert_event(h.conn, rows),
        query.INSERT_EVENT,
        raw,
        fetch="batchexec",
        mutates=True,
    )
    assert_type(done, None)
    events = h.check(lambda: query.list_events(h.conn), query.LIST_EVENTS)
    assert [e.data for e in events] == [{"x": 1}, None, [True, None]]
    h.check(
        lambda: query.delete_event(h.conn, [query.DeleteEventParams(2)]),
        query.DELETE_EVENT,
        [(2,)],
        fetch="batchexec",
        mutates=True,
    )
    assert [e.id for e in query.list_events(h.conn)] == [1, 3]


async def check_async(h: AsyncHarness) -> None:
    rows = [query.InsertEventParams(10, "z", "just a string")]
    await h.check(
        lambda: query.insert_event_async(h.conn, rows),
        query.INSERT_EVENT,
        [(10, "z", Jsonb("just a string"))],
        fetch="batchexec",
        mutates=True,
    )
    events = await h.check(lambda: query.list_events_async(h.conn), query.LIST_EVENTS)
    assert events[-1].data == "just a string"
