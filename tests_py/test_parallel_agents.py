"""One user's parallel agents (issue 17): no per-user serialization, a budget enforced while
they run, and the process-wide event hub.

Real sessions through the generated bindings, in tenant transactions, in threads against the
server; the hub and the listener follow them over LISTEN/NOTIFY and the event log.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from itertools import islice

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keen_dev.ledger import credit, new_user
from keen_queries.models import SessionEvent

from keen_sql.config import Settings
from keen_sql.database import Database, Queries
from keen_sql.errors import (
    AccountNotActive,
    DailyLimitExceeded,
    InsufficientCredits,
    InvalidStateTransition,
    MonthlyLimitExceeded,
)
from keen_sql.events import EventHub, EventListener

SESSIONS = 8
REPORTS = 12  # per session: started + 12 progress + completed


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    """Tenant transactions on this module's database."""
    with Database(Settings(database_url=db_url, pool_max_size=SESSIONS + 4)) as database:
        yield database


def start(q: Queries, name: str, parent: str | None = None) -> None:
    q.sessions.start_session(
        session_id=name,
        vision="v",
        working_directory="/w",
        git_branch="main",
        parent_session_id=parent,
    )


def report(q: Queries, name: str, cost: Decimal | str = "0", tokens: int = 10) -> None:
    q.sessions.update_session_progress(
        session_id=name,
        phase=None,
        iterations=1,
        tool_calls=1,
        tokens=tokens,
        cost=Decimal(cost),
    )


def complete(q: Queries, name: str, total: Decimal | None = None) -> None:
    q.sessions.complete_session(
        session_id=name,
        success=True,
        total_cost=total,
        files_created=None,
        files_modified=None,
        files_deleted=None,
        completion_report=None,
        error_message=None,
    )


def replay(db: Database, user: uuid.UUID) -> list[SessionEvent]:
    """The user's whole log, once nothing waits above the horizon any more (an older
    transaction of the cluster, an autoanalyze say, may hold the listing back briefly)."""
    deadline = time.monotonic() + 10
    while True:
        with db.tenant(user) as q:
            rows = q.sessions.list_session_events(after_id=0, session_id=None, limit=10000)
            waiting = q.sessions.session_events_waiting(session_id=None)
        if not waiting or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def balance(db: Database, user: uuid.UUID) -> tuple[Decimal, Decimal]:
    """(current balance, held amount) of the user's account."""
    with db.tenant(user) as q:
        row = q.credits.credit_balance()
    assert row is not None and row.current_balance is not None and row.held_amount is not None
    return row.current_balance, row.held_amount


def assert_once_in_order(events: list[SessionEvent]) -> None:
    """Ids strictly increase (no repeat); each session's events are 1, 2, 3… (no gap)."""
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "ids must increase, without duplicates"
    per_session: dict[uuid.UUID, list[int]] = {}
    for e in events:
        per_session.setdefault(e.session_id, []).append(e.seq)
    for seqs in per_session.values():
        assert seqs == list(range(1, len(seqs) + 1))


# ===== 1. events: parallel writers, random commit order ======================================


def test_8_sessions_of_one_user_in_random_commit_order_hub_listener_and_replay_get_each_once(
    db: Database, db_url: str
) -> None:
    user = new_user(db_url)
    names = [f"par-{i}" for i in range(SESSIONS)]
    with db.tenant(user) as q:
        credit(q, Decimal("100"))
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
        EventListener(db_url, user, poll_interval=1.0) as listener,
    ):
        listener.connect()
        sub = hub.subscribe(user)
        readers = [
            threading.Thread(target=lambda: from_hub.extend(sub.events(idle_timeout=15))),
            threading.Thread(
                target=lambda: from_listener.extend(islice(listener.events(idle_timeout=15), total))
            ),
        ]
        for th in readers:
            th.start()
        agents = [threading.Thread(target=agent, args=(n, i)) for i, n in enumerate(names)]
        for th in agents:
            th.start()
        for th in agents:
            th.join()
        # Both began after the 8 session.started events were committed: they read them from
        # the log (after_id 0), so each takes `total` events in all.
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


def test_an_older_transaction_never_blocks_a_younger_one_and_its_late_commit_is_not_skipped(
    db: Database, db_url: str
) -> None:
    user = new_user(db_url)
    with db.tenant(user) as q:
        start(q, "old")
        start(q, "young")
    cursor = replay(db, user)[-1].id
    done = threading.Event()

    def young_report() -> None:
        with db.tenant(user) as q:
            report(q, "young")
        done.set()

    with db.tenant(user) as old:  # draws its event id first, commits last
        report(old, "old")
        other = threading.Thread(target=young_report)
        other.start()
        assert done.wait(5), "a report of another session of the user does not wait"
        other.join()
        # The younger event is committed, but the log holds it back while an older
        # transaction could still commit an event below it.
        with db.tenant(user) as q:
            held = q.sessions.list_session_events(after_id=cursor, session_id=None, limit=100)
            waiting = q.sessions.session_events_waiting(session_id=None)
        assert held == [] and waiting
    with db.tenant(user) as q:
        after = q.sessions.list_session_events(after_id=cursor, session_id=None, limit=100)
        still = q.sessions.session_events_waiting(session_id=None)
    names = {}
    with db.tenant(user) as q:
        for n in ("old", "young"):
            s = q.sessions.get_session(session_id=n)
            assert s is not None
            names[s.id] = n
    assert [names[e.session_id] for e in after] == ["old", "young"], "both, in id order"
    assert not still


def test_get_session_by_id_names_the_session_of_an_event_and_only_the_callers(
    db: Database, db_url: str
) -> None:
    alice, bob = new_user(db_url), new_user(db_url)
    with db.tenant(alice) as q:
        start(q, "named")
    event = replay(db, alice)[-1]
    with db.tenant(alice) as q:
        session = q.sessions.get_session_by_id(id=event.session_id)
    assert session is not None and session.session_id == "named"
    from keen_sql.errors import NotFound

    with pytest.raises(NotFound), db.tenant(bob) as q:
        q.sessions.get_session_by_id(id=event.session_id)


def test_siblings_started_in_one_transaction_come_back_in_start_order(
    db: Database, db_url: str
) -> None:
    user = new_user(db_url)
    children = [f"kid-{i:02d}" for i in range(20)]
    random.Random(7).shuffle(children)
    with db.tenant(user) as q:
        start(q, "parent")
        for name in children:  # one transaction: one start_time for all
            start(q, name, "parent")
    with db.tenant(user) as q:
        tree = q.sessions.session_tree(session_id="parent")
    assert [t.session_id for t in tree] == ["parent", *children]


# ===== 2. the budget ==========================================================================


def funded_user(db: Database, db_url: str, amount: str, *names: str) -> uuid.UUID:
    user = new_user(db_url)
    with db.tenant(user) as q:
        credit(q, Decimal(amount))
        for name in names:
            start(q, name)
    return user


def session_row(db: Database, user: uuid.UUID, name: str) -> tuple[Decimal, int]:
    with db.tenant(user) as q:
        s = q.sessions.get_session(session_id=name)
    assert s is not None
    return s.total_cost, s.last_event_seq


def test_two_sessions_reporting_6_of_10_second_raises_KE001_writes_nothing_both_complete_exact(
    db: Database, db_url: str
) -> None:
    user = funded_user(db, db_url, "10.00", "a", "b")
    with db.tenant(user) as q:
        report(q, "a", "6.00")
    before = session_row(db, user, "b"), balance(db, user), len(replay(db, user))
    with pytest.raises(InsufficientCredits), db.tenant(user) as q:
        report(q, "b", "6.00")
    assert (session_row(db, user, "b"), balance(db, user), len(replay(db, user))) == before
    with db.tenant(user) as q:
        complete(q, "a")
        complete(q, "b")
    assert balance(db, user) == (Decimal("4.0000"), Decimal("0.0000"))


def test_a_direct_deduction_or_hold_cannot_take_the_accepted_cost_and_completion_still_pays(
    db: Database, db_url: str
) -> None:
    user = funded_user(db, db_url, "10.00", "a")
    with db.tenant(user) as q:
        report(q, "a", "6.00")
    for spend in ("deduct", "hold"):
        with pytest.raises(InsufficientCredits), db.tenant(user) as q:
            if spend == "deduct":
                q.credits.deduct_credits(
                    amount=Decimal("5"),
                    session_id=None,
                    description=None,
                    idempotency_key=None,
                )
            else:
                q.credits.hold_credits(
                    session_id=None,
                    amount=Decimal("5"),
                    idempotency_key=None,
                    expires_in=None,
                )
    with db.tenant(user) as q:  # what is left (10 - 6 reserved, chunk rounding aside) goes
        row = q.credits.credit_balance()
        assert row is not None and row.available_balance is not None
        q.credits.deduct_credits(
            amount=row.available_balance,
            session_id=None,
            description=None,
            idempotency_key=None,
        )
    with db.tenant(user) as q:  # and the session still completes at its accepted cost
        complete(q, "a")
    assert balance(db, user) == (Decimal("0.0000"), Decimal("0.0000"))


def test_the_tenant_cannot_release_or_capture_its_running_sessions_hold(
    db: Database, db_url: str
) -> None:
    # The hole the agents' budget would otherwise have: release the hold that backs a running
    # session's accepted cost, spend the credits elsewhere, and the completion goes unpaid.
    user = funded_user(db, db_url, "10.00", "a")
    with db.tenant(user) as q:
        report(q, "a", "6.00")
        holds = q.conn.execute(
            "SELECT h.id FROM keen.credit_holds AS h JOIN keen.agent_sessions AS s"
            " ON s.user_id = h.user_id AND s.id = h.session_id"
            " WHERE s.session_id = 'a' AND h.status = 'active'"
        ).fetchall()
    assert len(holds) == 1
    hold_id = holds[0][0]
    with pytest.raises(InvalidStateTransition), db.tenant(user) as q:
        q.credits.release_hold(hold_id=hold_id)
    with pytest.raises(InvalidStateTransition), db.tenant(user) as q:
        q.credits.capture_hold(hold_id=hold_id)
    with pytest.raises(InsufficientCredits), db.tenant(user) as q:
        q.credits.deduct_credits(amount=Decimal("5"))
    with db.tenant(user) as q:  # the session settles its own hold, at its accepted cost
        complete(q, "a")
    assert balance(db, user) == (Decimal("4.0000"), Decimal("0.0000"))


def test_a_hold_placed_first_leaves_less_for_the_agents(db: Database, db_url: str) -> None:
    user = funded_user(db, db_url, "10.00", "a")
    with db.tenant(user) as q:
        q.credits.hold_credits(
            session_id=None, amount=Decimal("5"), idempotency_key=None, expires_in=None
        )
    with pytest.raises(InsufficientCredits), db.tenant(user) as q:
        report(q, "a", "6.00")
    with db.tenant(user) as q:
        report(q, "a", "5.00")
        complete(q, "a")
    assert balance(db, user) == (Decimal("5.0000"), Decimal("5.0000"))


@pytest.mark.parametrize(
    ("limit", "error"), [("daily", DailyLimitExceeded), ("monthly", MonthlyLimitExceeded)]
)
def test_a_report_past_a_spending_limit_raises_its_code_and_writes_nothing(
    db: Database, db_url: str, limit: str, error: type[Exception]
) -> None:
    user = funded_user(db, db_url, "50.00", "a", "b")
    with db.tenant(user) as q:
        q.credits.set_spending_limits(
            daily_limit=Decimal("8") if limit == "daily" else None,
            monthly_limit=Decimal("8") if limit == "monthly" else None,
        )
        report(q, "a", "6.00")
    before = session_row(db, user, "b"), balance(db, user)
    with pytest.raises(error), db.tenant(user) as q:
        report(q, "b", "3.00")
    assert (session_row(db, user, "b"), balance(db, user)) == before
    with db.tenant(user) as q:
        report(q, "b", "2.00")  # 6 + 2 = 8, within the limit
        complete(q, "a")
        complete(q, "b")
    assert balance(db, user)[0] == Decimal("42.0000")


def test_a_suspended_account_starts_no_session_and_its_agents_reserve_nothing_more(
    db: Database, db_url: str
) -> None:
    user = funded_user(db, db_url, "10.00", "a")
    with db.tenant(user) as q:
        report(q, "a", "0.50")  # reserves a chunk of 1.00
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            "UPDATE keen.credit_accounts SET account_status = 'suspended',"
            " suspended_reason = 'test' WHERE user_id = %s",
            (user,),
        )
    with pytest.raises(AccountNotActive), db.tenant(user) as q:
        start(q, "b")
    before = session_row(db, user, "a")
    with pytest.raises(AccountNotActive), db.tenant(user) as q:
        report(q, "a", "2.00")  # beyond the reservation: the account refuses the hold
    assert session_row(db, user, "a") == before


def test_most_reports_do_not_touch_the_account_row(db: Database, db_url: str) -> None:
    user = funded_user(db, db_url, "10.00", "a")
    with psycopg.connect(db_url, autocommit=True) as admin:
        before = admin.execute(
            "SELECT n_tup_upd + n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE relid = 'keen.credit_accounts'::regclass"
        ).fetchone()
        with db.tenant(user) as q:
            for _ in range(100):
                report(q, "a", "0.015")  # 1.50 in all: two chunks of 1.00
        holds = admin.execute(
            "SELECT count(*), sum(amount) FILTER (WHERE status = 'active')"
            " FROM keen.credit_holds WHERE user_id = %s",
            (user,),
        ).fetchone()
    assert before is not None and holds is not None
    # Two reservations (the first report and the one crossing 1.00), not 100: with the
    # stand-in extend_hold each leaves one hold row behind (released, then the active one).
    assert holds[0] <= 2 and holds[1] == Decimal("2.0000")
    with db.tenant(user) as q:
        complete(q, "a")
    assert balance(db, user) == (Decimal("8.5000"), Decimal("0.0000"))


operations = st.lists(
    st.tuples(
        st.sampled_from(["report", "report", "report", "complete", "buy", "spend"]),
        st.integers(min_value=0, max_value=2),
        st.sampled_from(["0.25", "1.10", "2.00", "3.3333"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_no_session_ever_completes_unpaid_whatever_the_interleaving(
    db: Database, db_url: str, ops: list[tuple[str, int, str]]
) -> None:
    user = funded_user(db, db_url, "5.00", "s0", "s1", "s2")
    accepted = {f"s{i}": Decimal(0) for i in range(3)}
    done: set[str] = set()
    paid = Decimal(0)
    bought = Decimal(5)
    for kind, index, amount in ops:
        name = f"s{index}"
        value = Decimal(amount)
        try:
            with db.tenant(user) as q:
                if kind == "report" and name not in done:
                    report(q, name, value)
                    accepted[name] += value
                elif kind == "complete" and name not in done:
                    # At the accepted cost: never refused for lack of credits.
                    complete(q, name)
                    done.add(name)
                    paid += accepted[name]
                elif kind == "buy":
                    credit(q, value)
                    bought += value
                elif kind == "spend":
                    q.credits.deduct_credits(
                        amount=value,
                        session_id=None,
                        description=None,
                        idempotency_key=None,
                    )
                    paid += value
        except InsufficientCredits:
            assert kind in ("report", "spend"), f"{kind} refused for lack of credits"
        current, held = balance(db, user)
        assert current == bought - paid, "every completed session paid exactly its cost"
        open_cost = sum(v for n, v in accepted.items() if n not in done)
        assert held >= open_cost, "the running sessions' accepted cost is reserved"
        assert current >= held
    with db.tenant(user) as q:
        for name in accepted.keys() - done:
            complete(q, name)
    assert balance(db, user) == (
        bought - paid - sum(accepted[n] for n in accepted.keys() - done),
        Decimal("0.0000"),
    )
    with psycopg.connect(db_url, autocommit=True) as admin:
        assert admin.execute("SELECT * FROM keen.verify_ledger()").fetchall() == []


# ===== 3. the process-wide hub ================================================================

USERS = 1000


def test_1000_subscribers_on_one_listen_connection_and_3_pooled_each_get_their_events_once(
    db_url: str,
) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        users = [
            uuid.UUID(str(r[0]))
            for r in admin.execute(
                "SELECT keen.register_user(p_email => 'fan' || g || '-' || %s || '@example.com',"
                " p_username => 'fan_' || g || '_' || %s, p_password_hash => repeat('h', 60))"
                " FROM generate_series(1, %s) AS g",
                (uuid.uuid4().hex[:8], uuid.uuid4().hex[:8], USERS),
            ).fetchall()
        ]
    sep = "&" if "?" in db_url else "?"
    pool = Settings(
        database_url=f"{db_url}{sep}application_name=fan-out", pool_min_size=1, pool_max_size=3
    )
    writer = Settings(database_url=db_url, pool_max_size=4)
    received: dict[uuid.UUID, list[SessionEvent]] = {u: [] for u in users}
    with (
        Database(pool) as readers,
        Database(writer) as wdb,
        EventHub(readers, poll_interval=2.0) as hub,
    ):
        subs = {u: hub.subscribe(u) for u in users}
        for i, u in enumerate(users):
            with wdb.tenant(u) as q:
                start(q, f"fan-{i}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for u, sub in subs.items():
                while (event := sub.get(timeout=0)) is not None:
                    received[u].append(event)
            if all(len(v) >= 1 for v in received.values()):
                break
            time.sleep(0.05)
        with psycopg.connect(db_url, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'fan-out'",
            ).fetchone()
            listening = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query = 'LISTEN keen_events'"
            ).fetchone()
        time.sleep(0.3)  # nothing more arrives: no repeats
        for u, sub in subs.items():
            while (event := sub.get(timeout=0)) is not None:
                received[u].append(event)
    assert row is not None and listening is not None
    # One LISTEN connection and at most the pool's 3, for 1,000 subscribed users.
    assert row[0] <= 4, f"the hub used {row[0]} server connections"
    assert listening[0] >= 1
    for u in users:
        assert [(e.user_id, e.event_type) for e in received[u]] == [(u, "session.started")]


def test_asyncio_consumers_of_the_hub_wait_on_the_loop_not_on_threads(
    db: Database, db_url: str
) -> None:
    # More consumers than any thread pool has threads: each waits on the event loop.
    users = [new_user(db_url) for _ in range(40)]

    async def scenario(hub: EventHub) -> dict[uuid.UUID, list[str]]:
        subs = {u: hub.subscribe(u) for u in users}

        async def consume(u: uuid.UUID) -> list[str]:
            return [e.event_type async for e in subs[u].aevents(idle_timeout=3)]

        tasks = [asyncio.create_task(consume(u)) for u in users]
        await asyncio.sleep(0.2)  # all 40 are waiting now
        loop = asyncio.get_running_loop()
        for i, u in enumerate(users):
            await loop.run_in_executor(None, run_start, u, f"async-{i}")
        return dict(zip(users, await asyncio.gather(*tasks), strict=True))

    def run_start(u: uuid.UUID, name: str) -> None:
        with db.tenant(u) as q:
            start(q, name)

    with EventHub(db, poll_interval=1.0) as hub:
        got = asyncio.run(scenario(hub))
    assert all(v == ["session.started"] for v in got.values())
