from typing import assert_type

from case_insert_returning import models, query

from tests.harness import AsyncHarness, Harness, collect


def check(h: Harness) -> None:
    made = h.check(
        lambda: query.create_tasks(h.conn, ids=[1, 2], titles=["a", "b"]),
        query.CREATE_TASKS,
        ([1, 2], ["a", "b"]),
        mutates=True,
    )
    assert_type(made, list[models.Task])
    assert made == [models.Task(1, "a", False), models.Task(2, "b", False)]
    gone = h.check(
        lambda: query.delete_task(h.conn, id=2), query.DELETE_TASK, (2,), fetch="one", mutates=True,
        value=str,
    )
    assert gone == "b"


async def check_async(h: AsyncHarness) -> None:
    made = await h.check(
        lambda: query.create_tasks_async(h.conn, ids=[3, 4], titles=["c", "d"]),
        query.CREATE_TASKS,
        ([3, 4], ["c", "d"]),
        mutates=True,
    )
    assert_type(made, list[models.Task])
    assert [t.id for t in made] == [3, 4]
    streamed = await h.check(
        lambda: collect(query.create_tasks_iter_async(h.conn, ids=[5, 6], titles=["e", "f"])),
        query.CREATE_TASKS,
        ([5, 6], ["e", "f"]),
        mutates=True,
    )
    assert [t.title for t in streamed] == ["e", "f"]
    finished = await h.check(
        lambda: query.finish_tasks_async(h.conn, ids=[1, 3, 5]),
        query.FINISH_TASKS,
        ([1, 3, 5],),
        mutates=True,
    )
    assert sorted(finished) == [(1, True), (3, True), (5, True)]
