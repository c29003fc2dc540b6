from typing import assert_type

from case_batch_many_one import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    adds = [query.AddScoreParams("ann", 1, 10), query.AddScoreParams("ann", 2, 7)]
    added = h.check(
        lambda: query.add_score(h.conn, adds),
        query.ADD_SCORE,
        [tuple(a) for a in adds],
        fetch="batchone",
        mutates=True,
    )
    assert_type(added, list[models.Score])
    assert added == [models.Score("ann", 1, 10), models.Score("ann", 2, 7)]
    h.execute("INSERT INTO scores VALUES ('bob', 1, 3)")
    who = [query.ScoresOfParams("ann"), query.ScoresOfParams("nobody"), query.ScoresOfParams("bob")]
    many = h.check(
        lambda: query.scores_of(h.conn, who), query.SCORES_OF, [("ann",), ("nobody",), ("bob",)],
        fetch="batchmany",
    )
    assert_type(many, list[list[query.ScoresOfRow]])
    assert [len(rows) for rows in many] == [2, 0, 1]
    best = h.check(
        lambda: query.best_of(h.conn, [query.BestOfParams("ann"), query.BestOfParams("x")]),
        query.BEST_OF,
        [("ann",), ("x",)],
        fetch="batchone",
    )
    assert_type(best, list[query.BestOfRow | None])
    assert best == [query.BestOfRow("ann", 10), None]


async def check_async(h: AsyncHarness) -> None:
    many = await h.check(
        lambda: query.scores_of_async(h.conn, [query.ScoresOfParams("bob")]),
        query.SCORES_OF,
        [("bob",)],
        fetch="batchmany",
    )
    assert many == [[query.ScoresOfRow(1, 3)]]
    best = await h.check(
        lambda: query.best_of_async(h.conn, [query.BestOfParams("bob")]),
        query.BEST_OF,
        [("bob",)],
        fetch="batchone",
    )
    assert best == [query.BestOfRow("bob", 3)]
