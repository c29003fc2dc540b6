"""The event stream on a distributed cluster (issue 19): run against a Citus coordinator.

`KEEN_CITUS_URL` names the coordinator database, migrated and distributed
(keen_sql/sql/citus/distribute.sql). Not collected by the normal suite (tests_citus/ is
not in testpaths): `make test-citus` runs it. Without the variable the module fails.

* A listener on the coordinator hears the `keen_events` wake-up: `keen.append_session_event`
  sends it from the coordinator, where the listeners are (a trigger would run on the worker).
* One user's sessions report in parallel and commit in random order while the hub and a
  listener follow them: every event arrives once, in id order, and the replay is the same.
  The ids carry the coordinator's transaction ids and the horizon is the coordinator's
  snapshot: the comment of keen.append_session_event says why that is gapless on Citus.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from itertools import islice

import psycopg
import pytest
from keen_queries.models import SessionEvent
from psycopg import sql

from keen_sql.config import Settings
from keen_sql.database import Database, Queries
from keen_sql.events import EventHub, EventListener

SESSIONS = 8
REPORTS = 12  # per session: started + 12 progress + completed


@pytest.fixture(scope="module")
def citus_url() -> str:
    url = os.environ.get("KEEN_CITUS_URL")
    if not url:
        pytest.fail("KEEN_CITUS_URL must name a migrated, distributed Citus coordinator database")
    return url


@pytest.fixture(scope="module")
def db(citus_url: str) -> Iterator[Database]:
    with Database(Settings(database_url=citus_url, pool_max_size=SESSIONS + 4)) as database:
        yield database


def new_user(url: str, balance: Decimal = Decimal("100")) -> uuid.UUID:
    """A user with a funded credit account, written as keen_owner (the fixture bypasses the
    users and credits APIs: only the sessions area is under test here)."""
    user = uuid.uuid4()
    with psycopg.connect(url) as conn:
        conn.execute("SET ROLE keen_owner")
        conn.execute(
            "INSERT INTO keen.users (id, email, username, password_hash) VALUES (%s, %s, %s, %s)",
            (user, f"{user.hex}@example.com", f"u_{user.hex}", "x" * 40),
        )
        conn.execute(
            "INSERT INTO keen.credit_accounts (user_id, current_balance, lifetime_purchased)"
            " VALUES (%s, %s, %s)",
            (user, balance, balance),
        )
    return user


def start(q: Queries, name: str) -> None:
    q.sessions.start_session(
        session_id=name,
        vision="v",
        working_directory="/w",
        git_branch="main",
        parent_session_id=None,
    )


def report(q: Queries, name: str, cost: str) -> None:
    q.sessions.update_session_progress(
        session_id=name, phase=None, iterations=1, tool_calls=1, tokens=10, cost=Decimal(cost)
    )


def complete(q: Queries, name: str) -> None:
    q.sessions.complete_session(
        session_id=name,
        success=True,
        total_cost=None,
        files_created=None,
        files_modified=None,
        files_deleted=None,
        completion_report=None,
        error_message=None,
    )


def replay(db: Database, user: uuid.UUID) -> list[SessionEvent]:
    """The user's whole log once nothing waits above the horizon any more."""
    deadline = time.monotonic() + 10
    while True:
        with db.tenant(user) as q:
            rows = q.sessions.list_session_events(after_id=0, session_id=None, limit=10000)
            waiting = q.sessions.session_events_waiting(session_id=None)
        if not waiting or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def assert_once_in_order(events: list[SessionEvent]) -> None:
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "ids must increase, without duplicates"
    per_session: dict[uuid.UUID, list[int]] = {}
    for e in events:
        per_session.setdefault(e.session_id, []).append(e.seq)
    for seqs in per_session.values():
        assert seqs == list(range(1, len(seqs) + 1))


def test_a_listener_on_the_coordinator_hears_the_wake_up(db: Database, citus_url: str) -> None:
    user = new_user(citus_url)
    with psycopg.connect(citus_url, autocommit=True) as listener:
        listener.execute("LISTEN keen_events")
        with db.tenant(user) as q:
            start(q, "heard")
        heard = [n for n in listener.notifies(timeout=5, stop_after=1)]
    assert [(n.channel, n.payload) for n in heard] == [("keen_events", "")]
    with db.tenant(user) as q:
        session = q.sessions.get_session(session_id="heard")
    assert session is not None
    events = replay(db, user)
    got = [(e.session_id, e.seq, e.event_type) for e in events]
    assert got == [(session.id, 1, "session.started")]


def test_event_ids_carry_the_coordinators_transaction_id(db: Database, citus_url: str) -> None:
    user = new_user(citus_url)
    with psycopg.connect(citus_url) as conn:
        conn.execute("SELECT set_config('role', 'keen_app', true)")
        conn.execute(sql.SQL("SET LOCAL app.current_user_id = {}").format(str(user)))
        conn.execute(
            "SELECT keen.start_session(p_session_id => 'xid', p_vision => 'v',"
            " p_working_directory => '/w', p_git_branch => 'main')"
        )
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        assert row is not None
        xid = row[0]
    events = replay(db, user)
    assert [e.id >> 20 for e in events] == [xid]


def test_8_sessions_of_one_user_in_random_commit_order_hub_listener_and_replay_get_each_once(
    db: Database, citus_url: str
) -> None:
    user = new_user(citus_url)
    names = [f"par-{i}" for i in range(SESSIONS)]
    with db.tenant(user) as q:
        for name in names:
            start(q, name)
    total = SESSIONS * (REPORTS + 2)
    from_hub: list[SessionEvent] = []
    from_listener: list[SessionEvent] = []
    barrier = threading.Barrier(SESSIONS)

    def agent(name: str, seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(REPORTS):
            with db.tenant(user) as q:
                report(q, name, "0.01")
                # Commit after a random pause: transactions commit in another order than
                # the one they drew their event ids in.
                time.sleep(rng.uniform(0, 0.02))
        with db.tenant(user) as q:
            complete(q, name)

    with (
        EventHub(db, poll_interval=1.0) as hub,
        EventListener(citus_url, user, poll_interval=1.0) as listener,
    ):
        listener.connect()
        sub = hub.subscribe(user)
        readers = [
            threading.Thread(target=lambda: from_hub.extend(sub.events(idle_timeout=20))),
            threading.Thread(
                target=lambda: from_listener.extend(islice(listener.events(idle_timeout=20), total))
            ),
        ]
        for th in readers:
            th.start()
        agents = [threading.Thread(target=agent, args=(n, i)) for i, n in enumerate(names)]
        for th in agents:
            th.start()
        for th in agents:
            th.join()
        readers[1].join(timeout=60)
        deadline = time.monotonic() + 30
        while len(from_hub) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.close()
        readers[0].join(timeout=10)
        tail = list(listener.events(idle_timeout=0.5))
    logged = replay(db, user)
    assert len(logged) == total
    assert_once_in_order(logged)
    assert [e.id for e in from_hub] == [e.id for e in logged], "the hub: every event once"
    assert [e.id for e in from_listener + tail] == [e.id for e in logged], "the listener too"
    # The day's figures, added at commit on the coordinator by the usage queue's trigger.
    with psycopg.connect(citus_url) as conn:
        row = conn.execute(
            "SELECT sum(sessions_started), sum(sessions_completed), sum(tokens_used),"
            " sum(tool_calls), sum(total_cost), sum(credits_spent)"
            " FROM keen.daily_usage_stats AS d WHERE d.user_id = %s",
            (user,),
        ).fetchone()
        queued = conn.execute("SELECT count(*) FROM keen.session_usage_queue").fetchone()
    cost = Decimal("0.01") * SESSIONS * REPORTS
    assert row == (SESSIONS, SESSIONS, SESSIONS * REPORTS * 10, SESSIONS * REPORTS, cost, cost)
    assert queued == (0,)
