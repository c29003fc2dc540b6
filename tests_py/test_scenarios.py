"""The original design's acceptance scenarios, written as a service author writes them.

Only the public API: `Database`, the bound queries (`q.credits.deduct_credits(amount=…)`),
`keen_sql.errors`, `EventListener`. The file must stay clean under `mypy --strict` (make lint)
with no `assert … is not None` and no `=None` argument: rows are rows, optional arguments
are left out (a test below reads this file to hold it to that).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.errors import InsufficientCredits, NotFound
from keen_sql.events import EventListener
from keen_sql.security import hash_password

TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    with Database(Settings(database_url=db_url, pool_min_size=1, pool_max_size=4)) as database:
        yield database


def new_tenant(db: Database, balance: str) -> UUID:
    """A new tenant that bought `balance` credits."""
    tag = f"s{uuid4().hex[:12]}"
    with db.service() as q:
        user_id = q.users.register_user(
            email=f"{tag}@example.com",
            username=tag,
            password_hash=hash_password("correct horse battery staple"),
            timezone="UTC",
        )
    with db.tenant(user_id) as q:
        q.credits.add_credits(amount=Decimal(balance), idempotency_key=f"{tag}-purchase")
    return user_id


def test_isolation_a_tenant_sees_and_reaches_only_its_own_rows(db: Database) -> None:
    alice, bob = new_tenant(db, "10"), new_tenant(db, "20")
    with db.tenant(alice) as q:
        q.sessions.start_session(
            session_id="alice-1", vision="v", working_directory="/w", git_branch="main"
        )
    with db.tenant(bob) as q:
        assert q.credits.credit_balance().current_balance == Decimal("20")
        assert [t.user_id for t in q.credits.list_credit_transactions(limit=10)] == [bob]
        assert q.sessions.list_sessions() == []
    with pytest.raises(NotFound), db.tenant(bob) as q:  # KE006: not bob's, so not there
        q.sessions.get_session(session_id="alice-1")
    with db.tenant(alice) as q:
        assert q.credits.credit_balance().current_balance == Decimal("10")
        assert [s.session_id for s in q.sessions.list_sessions()] == ["alice-1"]


def test_concurrent_8_00_deductions_from_10_00_one_succeeds_one_raises_KE001(
    db: Database,
) -> None:
    user = new_tenant(db, "10.00")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def charge(n: int) -> None:
        barrier.wait()
        try:
            db.deduct_credits(user, amount=Decimal("8.00"), idempotency_key=f"race-{n}")
            outcomes.append("charged")
        except InsufficientCredits:
            outcomes.append("KE001")

    threads = [threading.Thread(target=charge, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["KE001", "charged"]
    with db.tenant(user) as q:
        assert q.credits.credit_balance().current_balance == Decimal("2.00")


def test_lifecycle_25_00_minus_3_75_leaves_21_25_and_a_ledger_that_adds_up(
    db: Database,
) -> None:
    user = new_tenant(db, "25.00")
    with db.tenant(user) as q:
        q.sessions.start_session(
            session_id="life", vision="v", working_directory="/w", git_branch="main"
        )
        q.sessions.update_session_progress(
            session_id="life", phase="PLAN", tokens=1200, cost=Decimal("3.75")
        )
        done = q.sessions.complete_session(session_id="life", success=True)
        assert (done.execution_status, done.total_cost) == ("completed", Decimal("3.75"))
        balance = q.credits.credit_balance()
        ledger = q.credits.list_credit_transactions(limit=10)
    assert balance.current_balance == Decimal("21.25")
    assert balance.lifetime_spent == Decimal("3.75")
    assert [(e.transaction_type, e.amount) for e in ledger] == [
        ("usage", Decimal("-3.75")),
        ("purchase", Decimal("25.00")),
    ]
    assert ledger[0].balance_after == Decimal("21.25")


def test_session_tree_of_a_root_two_children_and_a_grandchild(db: Database) -> None:
    user = new_tenant(db, "5")
    # One transaction each: siblings are listed in start order (start_time is the
    # transaction's time), depth first.
    with db.tenant(user) as q:
        q.sessions.start_session(
            session_id="r", vision="root", working_directory="/w", git_branch="main"
        )
    for sid, parent in (("r/a", "r"), ("r/b", "r"), ("r/a/x", "r/a")):
        with db.tenant(user) as q:
            q.sessions.start_session(
                session_id=sid,
                vision=sid,
                working_directory="/w",
                git_branch="main",
                parent_session_id=parent,
            )
    with db.tenant(user) as q:
        tree = q.sessions.session_tree(session_id="r")
        sub = q.sessions.session_tree(session_id="r/a")
    assert [(n.session_id, n.depth, n.path) for n in tree] == [
        ("r", 0, ["r"]),
        ("r/a", 1, ["r", "r/a"]),
        ("r/a/x", 2, ["r", "r/a", "r/a/x"]),
        ("r/b", 1, ["r", "r/b"]),
    ]
    assert tree[0].parent_session_id is None and tree[1].parent_session_id == tree[0].id
    assert [n.session_id for n in sub] == ["r/a", "r/a/x"]


def test_live_events_arrive_in_order_with_no_gap(db: Database, db_url: str) -> None:
    user = new_tenant(db, "5")
    with EventListener(db_url, user, poll_interval=1.0) as listener:
        listener.connect()
        with db.tenant(user) as q:
            q.sessions.start_session(
                session_id="live", vision="v", working_directory="/w", git_branch="main"
            )
        for step in range(3):
            with db.tenant(user) as q:
                q.sessions.update_session_progress(session_id="live", tokens=10 * (step + 1))
        with db.tenant(user) as q:
            q.sessions.complete_session(session_id="live", success=True)
        events = []
        for event in listener.events(idle_timeout=5):
            events.append(event)
            if len(events) == 5:
                break
    assert [e.event_type for e in events] == ["session.started"] + ["session.progress"] * 3 + [
        "session.completed"
    ]
    assert len(events) == 5
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    with db.tenant(user) as q:
        replay = q.sessions.list_session_events(session_id="live")
    assert [e.id for e in replay] == [e.id for e in events]


def test_usage_report_counts_the_day_and_zeros_the_quiet_ones(db: Database) -> None:
    user = new_tenant(db, "10")
    with db.tenant(user) as q:
        q.sessions.start_session(
            session_id="rep", vision="v", working_directory="/w", git_branch="main"
        )
        q.sessions.update_session_progress(session_id="rep", tokens=500, cost=Decimal("1.5"))
        q.sessions.complete_session(session_id="rep", success=True)
    with db.tenant(user) as q:  # session counters are added when the transaction commits
        days = q.analytics.usage_report(from_=TODAY - timedelta(days=2), to=TODAY)
    assert [d.date_bucket for d in days] == [TODAY - timedelta(days=n) for n in (2, 1, 0)]
    quiet, _, today = days
    assert (quiet.sessions_started, quiet.total_cost) == (0, Decimal(0))
    assert (today.sessions_started, today.sessions_completed, today.tokens_used) == (1, 1, 500)
    assert today.credits_spent == Decimal("1.5")
    assert today.credits_purchased == Decimal("10")


def test_this_file_needs_no_none_checks_or_none_arguments() -> None:
    source = Path(__file__).read_text()
    body = source[source.index("TODAY = ") : source.index("def test_this_file_needs")]
    assert not re.findall(r"assert [\w.]+ is not None", body)
    assert not re.findall(r"\w=None\b", body)
