"""keen_sql.retry: serialization failures (40001) and deadlocks (40P01) retried, bounded.

The failures are the server's own: two serializable transactions updating one credit
account, two transactions locking two rows in opposite orders, and 40001 raised by the
server on demand for the bound and backoff checks.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from keen_dev import ledger

from keen_sql import backup
from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database
from keen_sql.errors import InsufficientCredits
from keen_sql.retry import (
    RetryPolicy,
    is_retryable,
    retrying,
    run_with_retry,
    run_with_retry_async,
)

RAISE_40001 = "DO $$BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END$$"


def _with_options(url: str, options: str) -> str:
    """Return `url` with libpq startup `options` (server settings for every connection)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("options", options)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/", quote_via=quote)))


@pytest.fixture(scope="module")
def user(db_url: str) -> uuid.UUID:
    """A tenant with credit, in this module's database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        found = ledger.make_user(conn)
        ledger.activity(conn, [found], "retry", rounds=1)
    return found


@pytest.fixture(scope="module")
def serializable_db(db_url: str) -> Iterator[Database]:
    """A Database whose transactions are SERIALIZABLE and detect deadlocks after 50 ms."""
    url = _with_options(
        db_url, "-c default_transaction_isolation=serializable -c deadlock_timeout=50ms"
    )
    with Database(Settings(database_url=url, pool_min_size=2, pool_max_size=4)) as db:
        yield db


def _run_pair(body: Callable[[int], None]) -> list[BaseException | None]:
    """Run body(0) and body(1) in two threads; return what each raised (None for success)."""
    outcome: list[BaseException | None] = [None, None]

    def run(i: int) -> None:
        try:
            body(i)
        except BaseException as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


def _colliding_credit(
    db: Database, user: uuid.UUID, barrier: threading.Barrier, calls: list[int]
) -> Callable[[int], None]:
    """Both transactions take their snapshot, meet, then post to the same account."""

    def credit(i: int) -> None:
        calls.append(i)
        with db.tenant(user) as q:
            q.conn.execute("SELECT 1")  # snapshot taken before the other commits
            if calls.count(i) == 1:
                barrier.wait(timeout=10)
            ledger.credit(q, Decimal("1.0000"), f"ser-{i}-{uuid.uuid4().hex[:8]}")

    return credit


def test_concurrent_serializable_credits_fail_40001_without_the_helper(
    serializable_db: Database, user: uuid.UUID
) -> None:
    credit = _colliding_credit(serializable_db, user, threading.Barrier(2), [])
    outcome = _run_pair(credit)
    failed = [exc for exc in outcome if exc is not None]
    assert len(failed) == 1 and isinstance(failed[0], psycopg.errors.SerializationFailure)


def test_concurrent_serializable_credits_both_commit_with_retry_40001(
    serializable_db: Database, db_url: str, user: uuid.UUID
) -> None:
    calls: list[int] = []
    credit = _colliding_credit(serializable_db, user, threading.Barrier(2), calls)
    outcome = _run_pair(lambda i: run_with_retry(lambda: credit(i)))
    assert outcome == [None, None]
    assert len(calls) == 3, "exactly one of the two ran again"
    with psycopg.connect(db_url) as conn:
        assert backup.run_verifier(conn, "verify_ledger") == []


def test_deadlock_is_retried_and_both_transactions_commit_40P01(
    serializable_db: Database, db_url: str, user: uuid.UUID
) -> None:
    # Two rows of a scratch table of this test, writable by keen_app (the service role).
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.fault_pair (id int PRIMARY KEY, n int NOT NULL)")
        conn.execute("INSERT INTO public.fault_pair VALUES (1, 0), (2, 0)")
        conn.execute("GRANT SELECT, UPDATE ON public.fault_pair TO keen_app")
    barrier = threading.Barrier(2)
    calls: list[int] = []
    deadlocks: list[BaseException] = []

    @retrying(RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.1))
    def swap(i: int) -> None:
        calls.append(i)
        first, second = (1, 2) if i == 0 else (2, 1)
        try:
            with serializable_db.tenant(user) as q:
                q.conn.execute("UPDATE public.fault_pair SET n = n + 1 WHERE id = %s", (first,))
                if calls.count(i) == 1:
                    barrier.wait(timeout=10)
                q.conn.execute("UPDATE public.fault_pair SET n = n + 1 WHERE id = %s", (second,))
        except psycopg.errors.DeadlockDetected as exc:
            deadlocks.append(exc)
            raise

    try:
        assert _run_pair(swap) == [None, None]
        assert len(deadlocks) == 1 and len(calls) == 3
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT id, n FROM public.fault_pair ORDER BY id").fetchall()
        assert rows == [(1, 2), (2, 2)], "both transactions committed exactly once"
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DROP TABLE public.fault_pair")


def test_retry_is_bounded_and_reraises_the_last_40001(db_url: str) -> None:
    pauses: list[float] = []
    calls: list[int] = []
    policy = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.025)

    with psycopg.connect(db_url, autocommit=True) as conn:

        def always_conflicts() -> None:
            calls.append(1)
            conn.execute(RAISE_40001)

        with pytest.raises(psycopg.errors.SerializationFailure):
            run_with_retry(always_conflicts, policy=policy, sleep=pauses.append)

    assert len(calls) == 4 and len(pauses) == 3
    # Full jitter under an exponential ceiling capped by max_delay: 0.01, 0.02, 0.025.
    for pause, ceiling in zip(pauses, [0.01, 0.02, 0.025], strict=True):
        assert 0.0 <= pause <= ceiling


def test_retry_never_repeats_a_domain_error_KE001(
    serializable_db: Database, user: uuid.UUID
) -> None:
    calls: list[int] = []

    def overspend() -> Any:
        calls.append(1)
        with serializable_db.tenant(user) as q:
            ledger.spend(q, Decimal("1000000.0000"), f"too-much-{uuid.uuid4().hex[:8]}")

    with pytest.raises(InsufficientCredits):
        run_with_retry(overspend)
    assert calls == [1]


def test_backoff_ceilings_double_up_to_max_delay() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (9, 0.05)]:
        samples = [policy.delay(retry, rng) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling / 2, "jitter spreads over the whole range"
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_is_retryable_follows_the_cause_chain(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        try:
            conn.execute(RAISE_40001)
        except psycopg.Error as exc:
            original = exc
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = original
    assert is_retryable(original) and is_retryable(wrapped)
    assert not is_retryable(RuntimeError("other"))


def test_async_twin_retries_40001_then_succeeds_on_an_AsyncDatabase(
    db_url: str, user: uuid.UUID
) -> None:
    calls: list[int] = []

    async def scenario() -> None:
        async with AsyncDatabase(Settings(database_url=db_url, pool_max_size=2)) as db:

            async def conflicts_twice() -> None:
                calls.append(1)
                async with db.tenant(user) as q:
                    if len(calls) <= 2:
                        await q.conn.execute(RAISE_40001)
                    await q.conn.execute("SELECT 1")

            await run_with_retry_async(conflicts_twice, policy=RetryPolicy(base_delay=0.001))

    asyncio.run(scenario())
    assert len(calls) == 3
