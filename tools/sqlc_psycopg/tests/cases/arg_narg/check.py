import inspect
from typing import assert_type

from case_arg_narg import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    for pid, name, age in ((1, "Ann", 30), (2, "Andy", None), (3, "Bea", 50)):
        h.check(
            lambda: query.add_person(h.conn, id=pid, name=name, nickname=None, age=age),
            query.ADD_PERSON,
            (pid, name, None, age),
            fetch="none",
            mutates=True,
        )
    every = h.check(
        lambda: query.find_people(h.conn, name_prefix="A", min_age=None),
        query.FIND_PEOPLE,
        ("A", None),
    )
    assert [p.id for p in every] == [1, 2]
    old = h.check(
        lambda: query.find_people(h.conn, name_prefix="", min_age=40), query.FIND_PEOPLE, ("", 40)
    )
    assert [p.name for p in old] == ["Bea"]
    row = h.check(
        lambda: query.set_nickname(h.conn, nickname="Annie", id=1),
        query.SET_NICKNAME,
        ("Annie", 1),
        fetch="one",
        mutates=True,
    )
    assert_type(row, query.SetNicknameRow)
    assert row == (1, "Annie")
    params = inspect.signature(query.find_people).parameters
    assert list(params) == ["conn", "name_prefix", "min_age"]
    assert all(p.kind is p.KEYWORD_ONLY for n, p in params.items() if n != "conn")


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(
        lambda: query.find_people_async(h.conn, name_prefix="B", min_age=None),
        query.FIND_PEOPLE,
        ("B", None),
    )
    assert_type(rows, list[models.People])
    assert len(rows) == 1
