"""Analytics under real concurrency: usage stats exact after parallel session and credit
traffic, and dashboard refreshes that never block the dashboard's readers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from keen_dev.ledger import as_tenant, credit, make_user
from keen_queries import sessions
from psycopg import errors

from keen_sql import cli
from keen_sql.config import Settings
from keen_sql.database import Database

THREADS = 8
USERS = 3
SESSIONS_PER_THREAD = 20
ANALYTICS = "SELECT pg_catalog.set_config('role', 'keen_analytics', false)"


@pytest.fixture(scope="module")
def users(db_url: str) -> list[uuid.UUID]:
    """Tenants shared by every thread, each with credits to spend."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = [make_user(conn) for _ in range(USERS)]
        for user_id in ids:
            with as_tenant(conn, user_id):
                conn.execute("SELECT * FROM keen.add_credits(p_amount => 1000)")
    return ids


def _run_threads(target: Callable[[int], None], count: int) -> None:
    """Run target(0) … target(count - 1) in parallel threads; re-raise the first failure."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(target, n) for n in range(count)]:
            future.result()


def _session_day(db: Database, user_id: uuid.UUID, session_id: str, ok: bool) -> None:
    """One session's life through the public functions, one transaction per call."""
    with db.tenant(user_id) as q:
        sessions.start_session(
            q.conn,
            session_id=session_id,
            vision="analytics test",
            working_directory="/w",
            git_branch="main",
            parent_session_id=None,
        )
    with db.tenant(user_id) as q:
        sessions.update_session_progress(
            q.conn,
            session_id=session_id,
            phase="PLAN",
            iterations=1,
            tool_calls=3,
            tokens=120,
            cost=Decimal("0.25"),
        )
    with db.tenant(user_id) as q:
        # Charges the final cost (0.75) through the ledger in the same transaction.
        sessions.complete_session(
            q.conn,
            session_id=session_id,
            success=ok,
            total_cost=Decimal("0.75"),
            files_created=None,
            files_modified=None,
            files_deleted=None,
            completion_report=None,
            error_message=None if ok else "failed on purpose",
        )


def test_parallel_sessions_and_credits_leave_verify_usage_stats_empty(
    db_url: str, users: list[uuid.UUID]
) -> None:
    """8 threads start, update and complete sessions of the same users while purchases run."""
    settings = Settings(database_url=db_url, pool_max_size=THREADS)
    with Database(settings) as db:

        def worker(n: int) -> None:
            for i in range(SESSIONS_PER_THREAD):
                user_id = users[(n + i) % USERS]
                _session_day(db, user_id, f"t{n}-s{i}", ok=i % 4 != 0)
                if i % 5 == 0:
                    with db.tenant(user_id) as q:
                        credit(q, Decimal(1))

        _run_threads(worker, THREADS)
        with db.tenant(users[0]) as q:
            report = q.analytics.usage_report(
                from_=date.today() - timedelta(days=1), to=date.today() + timedelta(days=1)
            )
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM keen.verify_usage_stats()").fetchall() == []
        totals = conn.execute(
            "SELECT sum(sessions_started), sum(sessions_completed), sum(sessions_failed),"
            " sum(tokens_used), sum(tool_calls), sum(total_cost), sum(credits_spent)"
            " FROM keen.daily_usage_stats WHERE user_id = ANY(%s)",
            (users,),
        ).fetchone()
    n = THREADS * SESSIONS_PER_THREAD
    cost = Decimal("0.75") * n
    assert totals == (n, n * 3 // 4, n // 4, n * 120, n * 3, cost, cost)
    assert sum(r.sessions_started or 0 for r in report) > 0


def test_first_ledger_entry_of_the_day_waits_for_a_concurrent_creator_of_the_row(
    db_url: str,
) -> None:
    """The ledger trigger's one-UPDATE path sees no row while another transaction is creating
    it; the general path's INSERT … ON CONFLICT then waits for that transaction and adds."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        user_id = make_user(admin)
        with as_tenant(admin, user_id):
            admin.execute("SELECT * FROM keen.add_credits(p_amount => 10)")
        admin.execute("DELETE FROM keen.daily_usage_stats WHERE user_id = %s", (user_id,))

    def deduct() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn, as_tenant(conn, user_id):
            conn.execute("SELECT * FROM keen.deduct_credits(p_amount => 1)")

    with psycopg.connect(db_url) as creator, ThreadPoolExecutor(max_workers=1) as pool:
        # The day's row, as recomputed (the purchase), created and left uncommitted.
        creator.execute(
            "INSERT INTO keen.daily_usage_stats (user_id, date_bucket, credits_purchased)"
            " SELECT r.user_id, r.date_bucket, r.credits_purchased"
            " FROM keen.recompute_usage_stats(%s) AS r",
            (user_id,),
        )
        charged = pool.submit(deduct)
        time.sleep(1.0)
        assert not charged.done(), "the deduction waits for the uncommitted stats row"
        creator.commit()
        charged.result(timeout=30)

    with psycopg.connect(db_url, autocommit=True) as admin:
        assert admin.execute("SELECT * FROM keen.verify_usage_stats()").fetchall() == []
        row = admin.execute(
            "SELECT count(*), sum(credits_purchased), sum(credits_spent)"
            " FROM keen.daily_usage_stats WHERE user_id = %s",
            (user_id,),
        ).fetchone()
    assert row == (1, Decimal(10), Decimal(1))


@pytest.fixture(scope="module")
def dashboard_data(db_url: str, users: list[uuid.UUID]) -> Iterator[str]:
    """Enough sessions in the last 24 hours for a refresh to take a while.

    A bulk load, as documented: triggers off for the insert, then one stats rebuild.
    """
    with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision,"
            " working_directory, start_time, end_time, execution_status, tokens_used, total_cost)"
            " SELECT (%s::uuid[])[1 + g %% %s], 'bulk-' || g, 'main', 'v', '/w',"
            # Every session ends in the past (at most 96 s after a start 2 to 1,401 minutes
            # ago): an end_time after the refresh's hour would fall outside the view's hours.
            "   now() - (2 + g %% 1400) * interval '1 minute',"
            "   now() - (2 + g %% 1400) * interval '1 minute' + (g %% 97) * interval '1 second',"
            "   (ARRAY['completed', 'failed', 'cancelled'])[1 + g %% 3],"
            "   g %% 1000, (g %% 50) / 10.0"
            " FROM generate_series(1, 60000) AS g",
            (users, USERS),
        )
        conn.execute("SET LOCAL session_replication_role = origin")
        conn.execute("SELECT keen.rebuild_usage_stats()")
        conn.execute("SELECT keen.refresh_dashboard_metrics()")
    yield db_url


def _reader(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(ANALYTICS)
    conn.execute("SET lock_timeout = '3s'")
    return conn


def test_concurrent_refresh_holds_no_lock_that_blocks_a_reader(dashboard_data: str) -> None:
    """While a refresh is in progress (lock held), a reader's SELECT completes at once."""
    with (
        psycopg.connect(dashboard_data) as refresher,
        _reader(dashboard_data) as reader,
        psycopg.connect(dashboard_data, autocommit=True) as watcher,
    ):
        refresher.execute(ANALYTICS)
        refresher.execute("SELECT keen.refresh_dashboard_metrics()")  # transaction left open
        held = watcher.execute(
            "SELECT mode FROM pg_locks WHERE pid = %s AND granted"
            " AND relation = 'keen.dashboard_metrics'::regclass",
            (refresher.info.backend_pid,),
        ).fetchall()
        assert ("ExclusiveLock",) in held
        started = time.monotonic()
        rows = reader.execute("SELECT count(*) FROM keen.dashboard_metrics").fetchone()
        read_seconds = time.monotonic() - started
        assert rows == (24,)
        assert read_seconds < 3  # lock_timeout would have raised had it waited
        refresher.commit()


def test_plain_refresh_would_block_the_same_reader(dashboard_data: str) -> None:
    """The control: a non-concurrent REFRESH locks readers out (so the test above can fail)."""
    with psycopg.connect(dashboard_data) as refresher, _reader(dashboard_data) as reader:
        reader.execute("SET lock_timeout = '200ms'")
        refresher.execute("SET jit = off")
        refresher.execute("REFRESH MATERIALIZED VIEW keen.dashboard_metrics")
        with pytest.raises(errors.LockNotAvailable):
            reader.execute("SELECT count(*) FROM keen.dashboard_metrics")
        refresher.rollback()


def test_readers_read_throughout_repeated_refreshes(dashboard_data: str) -> None:
    """Two readers poll while refreshes repeat: every read succeeds with all 24 hours."""
    stop = threading.Event()
    reads: list[int] = []

    def work(n: int) -> None:
        if n == 0:
            try:
                with psycopg.connect(dashboard_data, autocommit=True) as conn:
                    conn.execute(ANALYTICS)
                    for _ in range(4):
                        conn.execute("SELECT keen.refresh_dashboard_metrics()")
            finally:
                stop.set()
            return
        with _reader(dashboard_data) as conn:
            while not stop.is_set():
                row = conn.execute("SELECT count(*) FROM keen.dashboard_metrics").fetchone()
                assert row is not None
                reads.append(row[0])

    _run_threads(work, 3)
    assert reads and set(reads) == {24}


def test_dashboard_refresh_matches_direct_aggregates(dashboard_data: str) -> None:
    """Refreshed by its definer (keen_owner under RLS), the view still counts every tenant."""
    with psycopg.connect(dashboard_data, autocommit=True) as conn:
        conn.execute("SELECT keen.refresh_dashboard_metrics()")
        viewed = conn.execute(
            "SELECT sum(sessions_started), sum(sessions_completed + sessions_failed"
            " + sessions_cancelled), sum(tokens_used) FROM keen.dashboard_metrics"
        ).fetchone()
        direct = conn.execute(
            "SELECT (SELECT count(*) FROM keen.agent_sessions WHERE start_time >= m.since),"
            " (SELECT count(*) FROM keen.agent_sessions WHERE end_time >= m.since),"
            " (SELECT sum(tokens_used) FROM keen.agent_sessions WHERE end_time >= m.since)"
            " FROM (SELECT min(hour_bucket) AS since FROM keen.dashboard_metrics) AS m"
        ).fetchone()
    assert viewed == direct
    assert viewed is not None and viewed[0] > 0


def test_keen_app_cannot_read_the_dashboard(dashboard_data: str) -> None:
    """keen_app has no privilege on dashboard_metrics (42501)."""
    with psycopg.connect(dashboard_data) as conn:
        conn.execute("SELECT pg_catalog.set_config('role', 'keen_app', true)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM keen.dashboard_metrics")


def test_usage_report_types(db_url: str, users: list[uuid.UUID]) -> None:
    """Through db.tenant: one row per day, days as date, money as Decimal, counts as int."""
    today = date.today()
    with Database(Settings(database_url=db_url, pool_max_size=1)) as db, db.tenant(users[0]) as q:
        rows = q.analytics.usage_report(from_=today - timedelta(days=6), to=today)
    assert [r.date_bucket for r in rows] == [today - timedelta(days=6 - i) for i in range(7)]
    assert all(isinstance(r.total_cost, Decimal) for r in rows)
    assert all(isinstance(r.credits_spent, Decimal) for r in rows)
    assert all(isinstance(r.sessions_started, int) for r in rows)


def test_cli_analytics_refresh_and_verify(
    dashboard_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`keen-sql analytics refresh` refreshes; `analytics verify` exits 0 on a healthy database."""
    assert cli.main(["--database-url", dashboard_data, "analytics", "refresh"]) == 0
    assert cli.main(["--database-url", dashboard_data, "analytics", "verify"]) == 0
    out = capsys.readouterr().out
    assert "dashboard_metrics refreshed" in out
    assert "0 difference(s)" in out
