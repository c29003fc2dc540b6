from case_sync_only import query

from tests.harness import Harness


def check(h: Harness) -> None:
    added = h.check(lambda: query.add_note(h.conn, id=1, body="x"), query.ADD_NOTE, (1, "x"),
                    fetch="one", mutates=True, value=int)
    assert added == 1
    assert h.check(lambda: list(query.notes_iter(h.conn)), query.NOTES, value=str) == ["x"]
    assert not hasattr(query, "add_note_async") and not hasattr(query, "notes_iter_async")
