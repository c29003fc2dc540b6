"""The session event stream: NOTIFY payloads and the resumable listener (sync and async).

Writers run real sessions through the generated bindings in tenant transactions, in
threads against the server; listeners follow them over LISTEN/NOTIFY and the event log.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from keen_dev.ledger import new_user
from keen_queries import sessions as q
from keen_queries.models import SessionEvent

from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.errors import NotFound
from keen_sql.events import (
    AsyncEventListener,
    DirectConnectionRequired,
    EventListener,
    _Stream,
)
from tests_py.test_isolation_pgbouncer import pgbouncer_url  # noqa: F401 - a fixture

SESSIONS = 8
PROGRESS = 6  # per session: started + 6 progress + completed = 8 events


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    """Tenant transactions on this module's database."""
    with Database(Settings(database_url=db_url, pool_max_size=SESSIONS + 2)) as database:
        yield database


def run_session(db: Database, user_id: uuid.UUID, name: str) -> None:
    """Start a session, report progress PROGRESS times, complete it: one transaction each."""
    with db.tenant(user_id) as t:
        t.call(
            q.start_session,
            session_id=name,
            vision="secret vision",
            working_directory="/w",
            git_branch="main",
            parent_session_id=None,
        )
    for i in range(PROGRESS):
        with db.tenant(user_id) as t:
            t.call(
                q.update_session_progress,
                session_id=name,
                phase=None,
                iterations=1,
                tool_calls=i,
                tokens=100,
                cost=None,
            )
    with db.tenant(user_id) as t:
        t.call(
            q.complete_session,
            session_id=name,
            success=True,
            total_cost=Decimal(0),
            files_created=None,
            files_modified=None,
            files_deleted=None,
            completion_report=None,
            error_message=None,
        )


def run_concurrently(db: Database, user_id: uuid.UUID, prefix: str) -> None:
    """SESSIONS sessions of one user, each in its own thread, all at once."""
    threads = [
        threading.Thread(target=run_session, args=(db, user_id, f"{prefix}-{i}"))
        for i in range(SESSIONS)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def logged(db: Database, user_id: uuid.UUID) -> list[SessionEvent]:
    """The user's whole event log, in id order, once nothing waits above the horizon (an
    older transaction of the cluster, an autoanalyze say, may hold the listing back)."""
    deadline = time.monotonic() + 10
    while True:
        with db.tenant(user_id) as t:
            rows = t.call(q.list_session_events, after_id=0, session_id=None, limit=10000)
            waiting = t.call(q.session_events_waiting, session_id=None)
        if not waiting or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def collect(listener: EventListener, count: int, out: list[SessionEvent]) -> None:
    """Append events to `out` until `count` arrived or 15 s pass without one."""
    for event in listener.events(idle_timeout=15):
        out.append(event)
        if len(out) >= count:
            return


def assert_in_order(events: list[SessionEvent]) -> None:
    """Ids strictly increase; each session's events are numbered 1, 2, 3… without a gap."""
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "ids must increase, without duplicates"
    per_session: dict[uuid.UUID, list[int]] = {}
    for e in events:
        per_session.setdefault(e.session_id, []).append(e.seq)
    for seqs in per_session.values():
        assert seqs == list(range(1, len(seqs) + 1))


def test_notify_payload_names_no_tenant_user_session_or_event(db: Database, db_url: str) -> None:
    user = new_user(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("LISTEN keen_events")
        with db.tenant(user) as t:
            row = t.call(
                q.start_session,
                session_id="notify-1",
                vision="secret vision",
                working_directory="/home/secret",
                git_branch="secret-branch",
                parent_session_id=None,
            )
        assert row is not None
        notes = list(conn.notifies(timeout=5, stop_after=1))
    # Any login may LISTEN: the wake-up is empty; the listener reads its own events via RLS.
    assert len(notes) == 1 and notes[0].channel == "keen_events"
    assert notes[0].payload == ""


def test_listener_receives_8_concurrent_sessions_in_order(db: Database, db_url: str) -> None:
    user = new_user(db_url)
    received: list[SessionEvent] = []
    total = SESSIONS * (PROGRESS + 2)
    with EventListener(db_url, user, poll_interval=1.0) as listener:
        listener.connect()
        reader = threading.Thread(target=collect, args=(listener, total, received))
        reader.start()
        run_concurrently(db, user, "conc")
        reader.join(timeout=60)
    assert len(received) == total
    assert_in_order(received)
    assert [e.id for e in received] == [e.id for e in logged(db, user)]


def test_listener_resumes_after_its_backend_is_killed_with_no_gap_or_duplicate(
    db: Database, db_url: str
) -> None:
    user = new_user(db_url)
    received: list[SessionEvent] = []
    total = SESSIONS * (PROGRESS + 2)
    killed = threading.Event()

    def kill_midway() -> None:
        # Once a quarter of the events arrived, terminate the listener's backend.
        for event in listener.events(idle_timeout=15):
            received.append(event)
            if len(received) == total // 4 and not killed.is_set():
                with psycopg.connect(db_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
                killed.set()
            if len(received) >= total:
                return

    with EventListener(db_url, user, poll_interval=1.0) as listener:
        listener.connect()
        reader = threading.Thread(target=kill_midway)
        reader.start()
        run_concurrently(db, user, "kill")
        reader.join(timeout=60)
        assert killed.is_set()
        # The events arrive through the pool; the LISTEN connection comes back on its own
        # thread, with backoff (at most 2 s a try): wait for it, bounded.
        deadline = time.monotonic() + 30
        while listener.reconnects < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.reconnects >= 1
    assert len(received) == total
    assert_in_order(received)
    assert [e.id for e in received] == [e.id for e in logged(db, user)]

    # A new listener resumes from any cursor: exactly the events after it.
    cursor = received[total // 2].id
    with EventListener(db_url, user, after_id=cursor) as resumed:
        rest = list(resumed.events(idle_timeout=0.5))
    assert [e.id for e in rest] == [e.id for e in received if e.id > cursor]


def test_listener_of_another_tenant_receives_nothing(db: Database, db_url: str) -> None:
    alice, bob = new_user(db_url), new_user(db_url)
    with EventListener(db_url, bob, poll_interval=0.2) as listener:
        listener.connect()
        run_session(db, alice, "alice-1")
        assert list(listener.events(idle_timeout=1.0)) == []
        # Bob's own events do arrive on the same listener.
        run_session(db, bob, "bob-1")
        assert [e.user_id for e in listener.events(idle_timeout=1.0)] == [bob] * (PROGRESS + 2)
    with (
        EventListener(db_url, bob, session_id="alice-1") as spy,
        pytest.raises(NotFound),
    ):
        next(iter(spy))


def test_session_listener_follows_one_session(db: Database, db_url: str) -> None:
    user = new_user(db_url)
    run_session(db, user, "one-a")
    run_session(db, user, "one-b")
    with EventListener(db_url, user, session_id="one-b") as listener:
        events = list(listener.events(idle_timeout=0.5))
    assert [e.seq for e in events] == list(range(1, PROGRESS + 3))
    assert {e.event_type for e in events} == {
        "session.started",
        "session.progress",
        "session.completed",
    }


def test_async_listener_streams_and_resumes(db: Database, db_url: str) -> None:
    user = new_user(db_url)

    async def scenario() -> tuple[list[SessionEvent], list[SessionEvent], int]:
        async with AsyncEventListener(db_url, user, poll_interval=0.5) as listener:
            await listener.connect()
            writer = asyncio.get_running_loop().run_in_executor(
                None, run_session, db, user, "async-1"
            )
            first: list[SessionEvent] = []
            async for event in listener.events(idle_timeout=10):
                first.append(event)
                if len(first) == 3:
                    break
            await writer
            cursor = listener.last_event_id
        async with AsyncEventListener(db_url, user, after_id=cursor) as resumed:
            rest = [e async for e in resumed.events(idle_timeout=0.5)]
        return first, rest, cursor

    first, rest, cursor = asyncio.run(scenario())
    assert cursor == first[-1].id, "the cursor is the last event handed out, not the last read"
    assert_in_order(first + rest)
    assert len(first) + len(rest) == PROGRESS + 2


def test_pooler_is_refused_with_a_clear_error() -> None:
    stream: Any = _Stream(Settings(), uuid.uuid4(), None, 0, 1.0, 10, 1.0, None)
    stream.check_direct(42, 42)
    with pytest.raises(DirectConnectionRequired, match="transaction-mode pooler"):
        stream.check_direct(42, 4242)
    stream.allow_pooler = True  # a session-mode pool, declared by the caller
    stream.check_direct(42, 4242)


def test_listener_through_pgbouncer_transaction_mode_raises_direct_connection_required(
    pgbouncer_url: str,  # noqa: F811 - the fixture
) -> None:
    with (
        EventListener(pgbouncer_url, uuid.uuid4()) as listener,
        pytest.raises(DirectConnectionRequired, match="PgBouncer with pool_mode=transaction"),
    ):
        listener.connect()


def test_listener_after_id_none_starts_from_the_first_event(db: Database, db_url: str) -> None:
    user = new_user(db_url)
    run_session(db, user, "from-start")
    with EventListener(db_url, user, after_id=None) as listener:
        events = list(listener.events(idle_timeout=0.5))
    assert [e.id for e in events] == [e.id for e in logged(db, user)]
    assert len(events) == PROGRESS + 2
    assert listener.last_event_id == events[-1].id
