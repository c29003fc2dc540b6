"""Agent sessions through the generated bindings: the typed lifecycle, and a tree worked on
by 8 threads at once (completing, cancelling, reporting progress) that must end with every
session in exactly one state and every cost charged exactly once.
"""

from __future__ import annotations

import datetime
import ipaddress
import random
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from keen_dev.ledger import credit, new_user
from keen_queries import credits as cq
from keen_queries import sessions as q

from keen_sql import cli
from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.errors import InvalidStateTransition, NotFound

THREADS = 8
OPS_PER_THREAD = 40


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    """Tenant transactions on this module's database."""
    with Database(Settings(database_url=db_url, pool_max_size=THREADS + 2)) as database:
        yield database


def start(db: Database, user: uuid.UUID, name: str, parent: str | None = None) -> None:
    """Start one session."""
    with db.tenant(user) as t:
        t.call(
            q.start_session,
            session_id=name,
            vision="v",
            working_directory="/w",
            git_branch="main",
            parent_session_id=parent,
        )


def test_lifecycle_returns_the_promised_types_and_charges_once(db: Database, db_url: str) -> None:
    user = new_user(db_url)
    with db.tenant(user) as t:
        credit(t, Decimal("25.00"))
        started = t.call(
            q.start_session,
            session_id="life",
            vision="v",
            working_directory="/w",
            git_branch="main",
            parent_session_id=None,
        )
        t.call(
            q.update_session_progress,
            session_id="life",
            phase="PLAN",
            iterations=1,
            tool_calls=2,
            tokens=300,
            cost=Decimal("1.5"),
        )
        done = t.call(
            q.complete_session,
            session_id="life",
            success=True,
            total_cost=Decimal("3.75"),
            files_created=["a.py"],
            files_modified=None,
            files_deleted=None,
            completion_report=None,
            error_message=None,
        )
        tree = t.call(q.session_tree, session_id="life")
        balance = t.call(cq.credit_balance)
    assert started is not None and done is not None and balance is not None
    assert isinstance(done.id, uuid.UUID) and done.id == started.id
    assert isinstance(done.total_cost, Decimal) and done.total_cost == Decimal("3.75")
    assert isinstance(done.end_time, datetime.datetime) and done.end_time.tzinfo is not None
    assert (done.execution_status, done.success, done.files_created) == (
        "completed",
        True,
        ["a.py"],
    )
    assert balance.current_balance == Decimal("21.2500")
    assert [(r.session_id, r.depth, r.path) for r in tree] == [("life", 0, ["life"])]
    with db.tenant(user) as t:
        again = t.call(
            q.complete_session,
            session_id="life",
            success=True,
            total_cost=Decimal("3.75"),
            files_created=["a.py"],
            files_modified=None,
            files_deleted=None,
            completion_report=None,
            error_message=None,
        )
    assert again is not None and again.updated_at == done.updated_at
    with pytest.raises(InvalidStateTransition), db.tenant(user) as t:
        t.call(
            q.update_session_progress,
            session_id="life",
            phase=None,
            iterations=None,
            tool_calls=None,
            tokens=1,
            cost=None,
        )
    with pytest.raises(NotFound), db.tenant(user) as t:
        t.call(q.get_session, session_id="nope")


def cost_of(index: int) -> Decimal:
    """Each session's cost is fixed, so two completions of it carry the same arguments."""
    return Decimal(index % 7) * Decimal("0.125") + Decimal("0.00005") * (index % 3)


def worker(
    db: Database, user: uuid.UUID, names: list[str], seed: int, errors: list[BaseException]
) -> None:
    """Random progress, completion and cancellation of the tree's sessions."""
    rng = random.Random(seed)
    for _ in range(OPS_PER_THREAD):
        i = rng.randrange(len(names))
        op = rng.random()
        try:
            with db.tenant(user) as t:
                if op < 0.5:
                    t.call(
                        q.update_session_progress,
                        session_id=names[i],
                        phase=None,
                        iterations=1,
                        tool_calls=1,
                        tokens=10,
                        cost=Decimal("0.01"),
                    )
                elif op < 0.85:
                    t.call(
                        q.complete_session,
                        session_id=names[i],
                        success=i % 4 != 0,
                        total_cost=cost_of(i),
                        files_created=None,
                        files_modified=None,
                        files_deleted=None,
                        completion_report=None,
                        error_message=None,
                    )
                else:
                    t.call(q.cancel_session, session_id=names[i])
        except InvalidStateTransition:
            pass  # the session (or its parent) was finished by another thread first
        except BaseException as exc:
            errors.append(exc)


def test_8_threads_on_one_tree_leave_one_state_per_session_and_no_double_charge(
    db: Database, db_url: str
) -> None:
    user = new_user(db_url)
    with db.tenant(user) as t:
        credit(t, Decimal("1000"))
    # root, 3 children, 9 grandchildren, 27 great-grandchildren.
    names = ["n0"]
    start(db, user, "n0")
    for i in range(1, 40):
        names.append(f"n{i}")
        start(db, user, f"n{i}", f"n{(i - 1) // 3}")

    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=worker, args=(db, user, names, seed, errors))
        for seed in range(THREADS)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []

    with psycopg.connect(db_url, autocommit=True) as conn:
        sessions = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT session_id, id, execution_status, last_event_seq, parent_session_id"
                " FROM keen.agent_sessions WHERE user_id = %s",
                (user,),
            ).fetchall()
        }
        events = conn.execute(
            "SELECT s.session_id, e.seq, e.event_type FROM keen.session_events e"
            " JOIN keen.agent_sessions s ON s.id = e.session_id WHERE e.user_id = %s ORDER BY e.id",
            (user,),
        ).fetchall()
        usage = conn.execute(
            "SELECT s.session_id, t.amount FROM keen.credit_transactions t"
            " JOIN keen.agent_sessions s ON s.id = t.session_id"
            " WHERE t.user_id = %s AND t.transaction_type = 'usage'",
            (user,),
        ).fetchall()
        row = conn.execute(
            "SELECT current_balance FROM keen.credit_accounts WHERE user_id = %s", (user,)
        ).fetchone()
        assert row is not None
        balance = row[0]
        violations = conn.execute("SELECT * FROM keen.verify_ledger()").fetchall()

    assert {s[1] for s in sessions.values()} - {"running"}, "the workers finished some sessions"
    by_session: dict[str, list[tuple[int, str]]] = {}
    for name, seq, kind in events:
        by_session.setdefault(name, []).append((seq, kind))
    charges: dict[str, Decimal] = {}
    for name, amount in usage:
        assert name not in charges, f"{name} charged twice"
        charges[name] = -amount
    for name, (_sid, status, last_seq, _parent) in sessions.items():
        log = by_session[name]
        assert [seq for seq, _ in log] == list(range(1, last_seq + 1)), f"{name}: gapless log"
        finals = [
            (seq, kind)
            for seq, kind in log
            if kind in {"session.completed", "session.failed", "session.cancelled"}
        ]
        if status == "running":
            assert finals == [], f"{name} is running yet has a final event"
        else:
            assert finals == [(last_seq, f"session.{status}")], f"{name}: one final event, the last"
        index = int(name[1:])
        expected = cost_of(index) if status in {"completed", "failed"} else Decimal(0)
        assert charges.get(name, Decimal(0)) == expected.quantize(
            Decimal("0.0001"), "ROUND_CEILING"
        )
    # A cancelled session leaves no running descendant.
    ids = {sid: name for name, (sid, *_rest) in sessions.items()}
    for name, (_sid, status, _seq, parent) in sessions.items():
        if status == "running":
            p = parent
            while p is not None:
                assert sessions[ids[p]][1] != "cancelled", f"{name} runs under cancelled {ids[p]}"
                p = sessions[ids[p]][3]
    assert balance == Decimal("1000") - sum(charges.values(), Decimal(0))
    assert violations == []


def test_cli_reaps_silent_connections_and_the_session_list_follows(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    user = new_user(db_url)
    start(db, user, "watched")
    with db.tenant(user) as t:
        for cid in ("ws-a", "ws-b"):
            t.call(
                q.open_connection,
                connection_id=cid,
                client_ip=ipaddress.ip_address("10.0.0.1"),
                user_agent=None,
                client_type=None,
                session_id="watched",
                subscribed_events=None,
                session_filters=None,
            )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE keen.websocket_connections SET last_ping_at = now() - interval '1 hour'"
            " WHERE user_id = %s AND connection_id = 'ws-a'",
            (user,),
        )
    assert (
        cli.main(["--database-url", db_url, "sessions", "reap-connections", "--idle-s", "600"]) == 0
    )
    assert "1 stale connection(s) reaped" in capsys.readouterr().out
    with db.tenant(user) as t:
        row = t.call(q.get_session, session_id="watched")
    assert row is not None and row.websocket_connections == ["ws-b"]
    assert (
        cli.main(["--database-url", db_url, "sessions", "prune-events", "--older-than-days", "1"])
        == 0
    )
    assert "0 session event(s) pruned" in capsys.readouterr().out


def test_list_sessions_pages_newest_first_without_gap_or_repeat(db: Database, db_url: str) -> None:
    user = new_user(db_url)
    for i in range(7):  # one transaction each: seven distinct start times
        start(db, user, f"page-{i}")
    with db.tenant(user) as t:  # two more sharing one start time: the id breaks the tie
        for name in ("page-7", "page-8"):
            t.call(
                q.start_session,
                session_id=name,
                vision="v",
                working_directory="/w",
                git_branch="main",
                parent_session_id=None,
            )
        t.call(
            q.complete_session,
            session_id="page-3",
            success=False,
            total_cost=None,
            files_created=None,
            files_modified=None,
            files_deleted=None,
            completion_report=None,
            error_message="x",
        )
    seen: list[str] = []
    before: tuple[datetime.datetime, uuid.UUID] | None = None
    while True:
        with db.tenant(user) as t:
            page = t.call(
                q.list_sessions,
                status=None,
                before_start_time=before[0] if before else None,
                before_id=before[1] if before else None,
                limit=2,
            )
        if not page:
            break
        seen += [s.session_id for s in page]
        before = (page[-1].start_time, page[-1].id)
    with psycopg.connect(db_url) as conn:
        expected = [
            r[0]
            for r in conn.execute(
                "SELECT session_id FROM keen.agent_sessions WHERE user_id = %s"
                " ORDER BY start_time DESC, id DESC",
                (user,),
            ).fetchall()
        ]
    assert seen == expected and len(seen) == 9
    assert seen[-7:] == [f"page-{i}" for i in range(6, -1, -1)]
    with db.tenant(user) as t:
        failed = t.call(
            q.list_sessions,
            status="failed",
            before_start_time=None,
            before_id=None,
            limit=None,
        )
    assert [s.session_id for s in failed] == ["page-3"]


def test_session_tree_orders_siblings_by_start_time_depth_first(db: Database, db_url: str) -> None:
    user = new_user(db_url)
    start(db, user, "root")
    # One transaction each, so each start time differs; names sort unlike the start order.
    for name, parent in (
        ("zeta", "root"),
        ("alpha", "root"),
        ("zeta-2", "zeta"),
        ("mid", "root"),
        ("zeta-1", "zeta"),
        ("alpha-1", "alpha"),
    ):
        start(db, user, name, parent)
    with db.tenant(user) as t:
        tree = t.call(q.session_tree, session_id="root")
    assert [(r.session_id, r.depth) for r in tree] == [
        ("root", 0),
        ("zeta", 1),
        ("zeta-2", 2),
        ("zeta-1", 2),
        ("alpha", 1),
        ("alpha-1", 2),
        ("mid", 1),
    ]
    assert tree[2].path == ["root", "zeta", "zeta-2"]
