"""The attacker model through real parts (docs/security.md): a NOINHERIT service login, the
real pool, two concurrent transactions. tests_sql/12_attacker.sql holds the SQL-only attacks.

Each test performs an attack of issue 13 the way it was reproduced and fails on the schema
and pool before migration 0009.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from keen_dev.ledger import credit
from psycopg import sql
from psycopg.conninfo import make_conninfo

from keen_sql import cli, errors
from keen_sql.config import Settings
from keen_sql.database import Database
from tests_py.tenants import register


@pytest.fixture
def login_url(db_url: str) -> Iterator[str]:
    """URL of a fresh NOINHERIT login granted keen_app (roles are cluster-wide: dropped after)."""
    name = f"keen_test_svc_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(name)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOINHERIT").format(role))
        conn.execute(sql.SQL("GRANT keen_app TO {}").format(role))
    try:
        yield make_conninfo(db_url, user=name)
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            conn.execute(sql.SQL("DROP ROLE {}").format(role))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    with Database(Settings(database_url=db_url, pool_min_size=1, pool_max_size=4)) as database:
        yield database


def test_service_login_creates_no_temporary_object_42501(login_url: str) -> None:
    # Finding 1: the login itself (a PUBLIC member) and keen_app both lack TEMP.
    with psycopg.connect(login_url, autocommit=True) as conn:
        for statement in (
            "CREATE TEMP TABLE t (x int)",
            "CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (VALUE IS NOT NULL)",
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.execute("SET ROLE keen_app")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.execute("RESET ROLE")


def test_pool_hands_the_next_tenant_a_clean_connection(login_url: str, db: Database) -> None:
    # Finding 2: tenant A tries to plant a temporary function for whoever gets its pooled
    # connection next; tenant B's transaction on that connection finds nothing of A's.
    a, b = register(db, "atk"), register(db, "vic")
    settings = Settings(database_url=login_url, pool_min_size=1, pool_max_size=1)
    with Database(settings) as pool:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), pool.tenant(a) as q:
            q.conn.execute(
                "CREATE FUNCTION pg_temp.current_user_id() RETURNS uuid LANGUAGE sql"
                " AS 'SELECT NULL::uuid'"
            )
        with pool.tenant(b) as q:
            row = q.conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_class"
                " WHERE relnamespace = pg_catalog.pg_my_temp_schema()"
            ).fetchone()
            me = q.conn.execute("SELECT keen.current_user_id()").fetchone()
    assert row == (0,) and me == (b,)


def test_pool_resets_session_state_before_the_next_tenant(login_url: str, db: Database) -> None:
    # Finding 15: session-level state left by tenant A (a setting, a LISTEN, an advisory
    # lock) is gone when tenant B gets the same (only) pooled connection.
    a, b = register(db, "atk"), register(db, "vic")
    settings = Settings(database_url=login_url, pool_min_size=1, pool_max_size=1)
    with Database(settings) as pool:
        with pool.tenant(a) as q:
            pid = q.conn.info.backend_pid
            q.conn.execute("SELECT pg_catalog.set_config('application_name', 'tenant-a', false)")
            q.conn.execute("SELECT pg_catalog.set_config('statement_timeout', '0', false)")
            q.conn.execute("LISTEN tenant_a_spy")
            q.conn.execute("SELECT pg_catalog.pg_advisory_lock(4242)")
        deadline = time.monotonic() + 5
        while pool.pool.get_stats().get("pool_available", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the reset runs in the pool's worker
        with pool.tenant(b) as q:
            assert q.conn.info.backend_pid == pid, "the test needs the same server connection"
            state = q.conn.execute(
                "SELECT pg_catalog.current_setting('application_name'),"
                " (SELECT count(*) FROM pg_catalog.pg_listening_channels()),"
                " (SELECT count(*) FROM pg_catalog.pg_locks"
                "   WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())"
            ).fetchone()
            # The pool's own defaults are set again (the transaction sets its own too).
            timeout = q.conn.execute("SHOW statement_timeout").fetchone()
    # application_name is back to what the pool connects with, not tenant A's.
    assert state == (settings.application_name, 0, 0)
    assert timeout is not None and timeout[0] != "0"


def test_another_tenant_cannot_stall_an_event_stream(login_url: str, db: Database) -> None:
    # Finding 7: tenant A holds, in an open transaction, every lock it can take on B's event
    # stream (the old advisory key, the stream function, B's user row); B's session
    # functions go on without waiting.
    a, b = register(db, "atk"), register(db, "vic")
    with db.tenant(b) as q:
        credit(q, Decimal("10"))
    holding = threading.Event()
    release = threading.Event()
    outcome: list[str] = []

    def attacker() -> None:
        with psycopg.connect(login_url) as conn:
            conn.execute("SELECT set_config('role', 'keen_app', true)")
            conn.execute("SELECT set_config('app.current_user_id', %s, true)", (str(a),))
            conn.execute(
                "SELECT pg_catalog.pg_advisory_xact_lock(1801811572, pg_catalog.hashtext(%s))",
                (str(b),),
            )
            for attempt in (
                "SELECT keen.lock_event_stream(%s)",
                "SELECT FROM keen.users WHERE id = %s FOR NO KEY UPDATE",
            ):
                try:
                    with conn.transaction():
                        conn.execute(attempt, (b,))
                    outcome.append("locked")
                except psycopg.errors.InsufficientPrivilege:
                    outcome.append("refused")
            holding.set()
            release.wait(30)
            conn.rollback()

    thread = threading.Thread(target=attacker)
    thread.start()
    try:
        assert holding.wait(15)
        victim = Settings(database_url=db.settings.database_url, lock_timeout_ms=3000)
        with Database(victim) as vdb, vdb.tenant(b) as q:
            started = time.monotonic()
            row = q.sessions.start_session(
                session_id="s-1", vision="v", working_directory="/w", git_branch="main"
            )
            q.sessions.update_session_progress(
                session_id="s-1", iterations=1, tool_calls=0, tokens=0, cost=Decimal("0")
            )
            elapsed = time.monotonic() - started
    finally:
        release.set()
        thread.join(30)
    assert outcome == ["refused", "refused"]
    assert row is not None and elapsed < 2.0


def test_tenant_cannot_write_or_lock_tables_through_the_pool(login_url: str, db: Database) -> None:
    # Findings 5, 6, 20 through the real pool and login: 42501, mapped to nothing else.
    a = register(db, "atk")
    settings = Settings(database_url=login_url, pool_min_size=1, pool_max_size=1)
    with Database(settings) as pool:
        for statement in (
            "LOCK TABLE keen.credit_accounts IN ACCESS EXCLUSIVE MODE",
            "UPDATE keen.agent_sessions SET end_time = 'infinity'",
            "UPDATE keen.credit_accounts SET daily_limit = NULL",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), pool.tenant(a) as q:
                q.conn.execute(statement)
        with pytest.raises(errors.NoTenantContext), pool.service() as q:
            q.conn.execute("SELECT set_config('app.current_user_id', 'not-a-uuid', true)")
            q.conn.execute("SELECT keen.require_user_id()")


def test_an_idle_service_transaction_is_ended_by_the_operator_job(
    login_url: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Finding 6, second half: an injected statement lifts its own idle timeout and leaves
    # the transaction open. keen.end_idle_transactions (an operator job, migration 0011)
    # ends it all the same; a service connection outside a transaction is left alone, and
    # keen_app may not call the job.
    with psycopg.connect(login_url) as victim, psycopg.connect(login_url, autocommit=True) as idle:
        victim.execute("SET idle_in_transaction_session_timeout = 0")
        victim.execute("SET ROLE keen_app")
        victim.execute("SELECT count(*) FROM keen.credit_accounts")
        pid, idle_pid = victim.info.backend_pid, idle.info.backend_pid
        time.sleep(0.3)
        # The operator's command (what the pg_cron job and the cron route run).
        assert cli.main(["--database-url", db_url, "sessions", "end-idle", "--idle-s", "0.1"]) == 0
        ended = capsys.readouterr().out
        assert int(ended.split()[0]) >= 1, ended
        with psycopg.connect(db_url, autocommit=True) as operator:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                gone = operator.execute(
                    "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity WHERE pid = %s)",
                    [pid],
                ).fetchone()
                if gone is not None and gone[0]:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the idle transaction's backend is still there")
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        assert idle.execute("SELECT pg_catalog.pg_backend_pid()").fetchone() == (idle_pid,)
        idle.execute("SET ROLE keen_app")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            idle.execute("SELECT keen.end_idle_transactions()")
