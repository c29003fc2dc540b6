from typing import assert_type

from case_composites import models, query

from tests.harness import AsyncHarness, Harness

P = models.Point2


def check(h: Harness) -> None:
    start = models.Place("home", P(1, 2), models.Mood.HAPPY, ["a", "b"])
    stops = [models.Place("shop", P(3, None), None, None), models.Place(None, None, None, [])]
    row = h.check(
        lambda: query.put_trip(h.conn, id=1, start=start, stops=stops, corner=None),
        query.PUT_TRIP,
        (1, start, stops, None),
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Trip)
    assert row is not None and row.start == start and row.stops == stops
    assert type(row.start) is models.Place and type(row.start.at) is P
    assert row.start.mood is models.Mood.HAPPY
    assert models.Place.__doc__ == "A named point."
    points = h.check(lambda: query.start_points(h.conn), query.START_POINTS)
    assert points == [(1, P(1, 2), "home")]


async def check_async(h: AsyncHarness) -> None:
    row = await h.check(
        lambda: query.put_trip_async(h.conn, id=2, start=models.Place("x", None, None, None),
                                     stops=[], corner=P(0, 0)),
        query.PUT_TRIP,
        (2, models.Place("x", None, None, None), [], P(0, 0)),
        fetch="one",
        mutates=True,
    )
    assert row is not None and row.corner == P(0, 0)
