"""Analytics under real concurrency: usage stats exact after parallel session and credit
traffic, and dashboard refreshes that never block the dashboard's readers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors

from keen_sql import cli
from tests_py.support.ledger import as_tenant, make_user

THREADS = 8
USERS = 3
SESSIONS_PER_THREAD = 20
ANALYTICS = "SELECT pg_catalog.set_config('role', 'keen_analytics', false)"


def _start(conn: psycopg.Connection[Any], user_id: uuid.UUID, session_id: str) -> uuid.UUID:
    with as_tenant(conn, user_id):
        row = conn.execute(
            "INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision,"
            " working_directory) VALUES (%s, %s, 'main', 'analytics test', '/w') RETURNING id",
            (user_id, session_id),
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def _progress(conn: psycopg.Connection[Any], user_id: uuid.UUID, session_id: str) -> None:
    with as_tenant(conn, user_id):
        conn.execute(
            "UPDATE keen.agent_sessions SET tokens_used = tokens_used + 120,"
            " tool_calls_count = tool_calls_count + 3, total_cost = total_cost + 0.25"
            " WHERE session_id = %s",
            (session_id,),
        )


def _complete(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, session_id: str, sid: uuid.UUID, ok: bool
) -> None:
    # The session row changes first and the charge follows in the same transaction: the
    # order that would deadlock with a concurrent purchase if stats were kept immediately.
    with as_tenant(conn, user_id):
        conn.execute(
            "UPDATE keen.agent_sessions SET execution_status = %s, end_time = now(),"
            " total_cost = total_cost + 0.5 WHERE session_id = %s",
            ("completed" if ok else "failed", session_id),
        )
        conn.execute(
            "SELECT * FROM keen.deduct_credits(p_amount => %s, p_session_id => %s)",
            (Decimal("0.7500"), sid),
        )


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


def test_parallel_sessions_and_credits_leave_verify_usage_stats_empty(
    db_url: str, users: list[uuid.UUID]
) -> None:
    """8 threads start, update and complete sessions of the same users while purchases run."""

    def worker(n: int) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            for i in range(SESSIONS_PER_THREAD):
                user_id = users[(n + i) % USERS]
                session_id = f"t{n}-s{i}"
                sid = _start(conn, user_id, session_id)
                _progress(conn, user_id, session_id)
                _complete(conn, user_id, session_id, sid, ok=i % 4 != 0)
                if i % 5 == 0:
                    with as_tenant(conn, user_id):
                        conn.execute("SELECT * FROM keen.add_credits(p_amount => 1)")

    _run_threads(worker, THREADS)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM keen.verify_usage_stats()").fetchall() == []
        totals = conn.execute(
            "SELECT sum(sessions_started), sum(sessions_completed), sum(sessions_failed),"
            " sum(tokens_used), sum(total_cost), sum(credits_spent)"
            " FROM keen.daily_usage_stats WHERE user_id = ANY(%s)",
            (users,),
        ).fetchone()
    n = THREADS * SESSIONS_PER_THREAD
    assert totals == (
        n,
        n * 3 // 4,
        n // 4,
        n * 120,
        Decimal("0.75") * n,
        Decimal("0.75") * n,
    )


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
            "   now() - (g %% 1400) * interval '1 minute',"
            "   now() - (g %% 1400) * interval '1 minute' + (g %% 97) * interval '1 second',"
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
    """The report's money is Decimal and its days are dates, one row per day."""
    with psycopg.connect(db_url, autocommit=True) as conn, as_tenant(conn, users[0]):
        rows = conn.execute(
            "SELECT date_bucket, total_cost, credits_spent"
            " FROM keen.usage_report(current_date - 6, current_date)"
        ).fetchall()
    assert len(rows) == 7
    assert all(isinstance(cost, Decimal) and isinstance(spent, Decimal) for _, cost, spent in rows)


def test_cli_analytics_refresh_and_verify(
    dashboard_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`keen-sql analytics refresh` refreshes; `analytics verify` exits 0 on a healthy database."""
    assert cli.main(["--database-url", dashboard_data, "analytics", "refresh"]) == 0
    assert cli.main(["--database-url", dashboard_data, "analytics", "verify"]) == 0
    out = capsys.readouterr().out
    assert "dashboard_metrics refreshed" in out
    assert "0 difference(s)" in out
