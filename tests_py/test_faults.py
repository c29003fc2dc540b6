"""Fault behaviour of keen_sql.Database: killed backends, pool exhaustion, timeouts.

Each fault is real: the backend is terminated by the server, the pool is really drained, the
statement really runs past statement_timeout, the lock is really held by another session.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from keen_dev import ledger
from psycopg_pool import PoolTimeout

from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.errors import LockTimeout, StatementTimeout


@pytest.fixture(scope="module")
def users(db_url: str) -> list[uuid.UUID]:
    """Two tenants with some credit, in this module's database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        found = [ledger.make_user(conn) for _ in range(2)]
        ledger.activity(conn, found, "faults", rounds=1)
    return found


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A Database with a small pool and short timeouts on this module's database."""
    settings = Settings(
        database_url=db_url,
        pool_min_size=1,
        pool_max_size=2,
        pool_timeout=0.5,
        statement_timeout_ms=400,
        lock_timeout_ms=100,
    )
    with Database(settings) as database:
        yield database


def _ledger_of(db_url: str, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT * FROM keen.credit_transactions WHERE user_id = %s ORDER BY entry_no",
            (user_id,),
        ).fetchall()


def _wait_for_query(db_url: str, pid: int, text: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _ in range(200):
            row = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)
            ).fetchone()
            if row and text in row[0]:
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never ran {text!r}")


def test_backend_killed_mid_transaction_leaves_no_partial_write(
    db_url: str, users: list[uuid.UUID]
) -> None:
    user = users[0]
    before = _ledger_of(db_url, user)
    pids: list[int] = []

    def kill_when_sleeping() -> None:
        deadline = time.monotonic() + 10
        while not pids:
            if time.monotonic() > deadline:
                return  # the transaction failed before it ran: the test reports why
            time.sleep(0.005)
        _wait_for_query(db_url, pids[0], "pg_sleep")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pids[0],))

    # One pooled connection: the call after the kill must get a new one from the same pool.
    with Database(Settings(database_url=db_url, pool_min_size=1, pool_max_size=1)) as db:
        killer = threading.Thread(target=kill_when_sleeping)
        killer.start()
        try:
            with pytest.raises(psycopg.OperationalError), db.tenant(user) as q:
                ledger.credit(q, Decimal("7.0000"), "killed-1")
                row = q.conn.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                pids.append(row[0])
                q.conn.execute("SELECT pg_sleep(30)")  # terminated here by the server
                ledger.credit(q, Decimal("8.0000"), "killed-2")
        finally:
            killer.join()

        assert _ledger_of(db_url, user) == before, "neither entry of the killed transaction exists"
        with db.tenant(user) as q:
            ledger.credit(q, Decimal("1.0000"), "after-kill")
    assert len(_ledger_of(db_url, user)) == len(before) + 1


def test_pool_exhaustion_raises_PoolTimeout_instead_of_hanging(
    db: Database, users: list[uuid.UUID]
) -> None:
    outcome: list[BaseException | None] = []

    def third_caller() -> None:
        try:
            with db.tenant(users[1]) as q:
                q.conn.execute("SELECT 1")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with ExitStack() as held:
        for _ in range(db.settings.pool_max_size):
            held.enter_context(db.tenant(users[0]))
        caller = threading.Thread(target=third_caller)
        caller.start()
        caller.join(timeout=30)  # a liveness bound, not a timing assertion
        assert not caller.is_alive(), "the caller hung on an exhausted pool"
    assert len(outcome) == 1 and isinstance(outcome[0], PoolTimeout)
    with db.tenant(users[1]) as q:  # connections returned: the pool serves again
        q.conn.execute("SELECT 1")


def test_statement_timeout_raises_StatementTimeout_57014(
    db: Database, users: list[uuid.UUID]
) -> None:
    with pytest.raises(StatementTimeout) as caught, db.tenant(users[0]) as q:
        q.conn.execute("SELECT pg_sleep(2)")
    assert caught.value.sqlstate == "57014"
    assert isinstance(caught.value.__cause__, psycopg.errors.QueryCanceled)


def test_lock_timeout_raises_LockTimeout_55P03(
    db: Database, db_url: str, users: list[uuid.UUID]
) -> None:
    user = users[1]
    before = _ledger_of(db_url, user)
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT FROM keen.credit_accounts WHERE user_id = %s FOR UPDATE", (user,))
        with pytest.raises(LockTimeout) as caught, db.tenant(user) as q:
            ledger.credit(q, Decimal("3.0000"), "locked-out")
        holder.rollback()
    assert caught.value.sqlstate == "55P03"
    assert _ledger_of(db_url, user) == before
