"""Pooled tenant transactions never leak a tenant: 16 threads, one pool, 50 tenants.

Each of 16 threads runs 2,000 transactions, each for a tenant picked at random among 50;
some raise mid-transaction (a Python exception after a write, a domain error, an SQL
error). Every read must return only the tenant's own rows, every rolled-back write must be
gone, and a connection handed back after an error must carry no role and no tenant.
The same workload runs through PgBouncer in test_isolation_pgbouncer.py.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
import pytest

from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database
from keen_sql.errors import NotFound
from tests_py.tenants import create_token, register

THREADS = 16
TENANTS = 50
TRANSACTIONS_PER_THREAD = 2_000
POOL_SIZE = 8
TOKENS_PER_TENANT = 2

# One round trip: the context as the server sees it, and the owners of every visible row
# of two tenant tables.
READ: LiteralString = """
SELECT keen.current_user_id(), current_user::text,
       (SELECT array_agg(DISTINCT t.user_id) FROM keen.auth_tokens AS t),
       (SELECT count(*) FROM keen.auth_tokens AS t),
       (SELECT array_agg(DISTINCT a.user_id) FROM keen.credit_accounts AS a)
"""
# Outside any tenant transaction: what a pooled connection carries at session level.
LEFTOVER: LiteralString = """
SELECT coalesce(current_setting('app.current_user_id', true), ''), current_setting('role'),
       current_user::text = session_user::text
"""


class Boom(Exception):
    """A failure of the service's own code in the middle of a tenant transaction."""


def seed_tenants(db: Database, count: int = TENANTS) -> list[uuid.UUID]:
    """Register `count` users, each with TOKENS_PER_TENANT API tokens; return their ids."""
    tenants = [register(db, "iso") for _ in range(count)]
    for tenant in tenants:
        with db.tenant(tenant) as q:
            for _ in range(TOKENS_PER_TENANT):
                create_token(q)
    return tenants


@dataclass
class Outcome:
    """What the threads saw; every list must stay empty."""

    leaks: list[str] = field(default_factory=list)
    dirty_connections: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, what: str) -> None:
        with self.lock:
            getattr(self, kind).append(what)


def _check_handed_back(db: Database, out: Outcome) -> None:
    """Take a pooled connection outside any tenant transaction and check it is clean."""
    with db.pool.connection() as conn:
        tenant, role, is_session_user = conn.execute(LEFTOVER).fetchone() or ("?", "?", False)
    if tenant != "" or role != "none" or not is_session_user:
        out.add("dirty_connections", f"tenant={tenant!r} role={role!r}")


def _worker(db: Database, tenants: list[uuid.UUID], seed: int, out: Outcome) -> None:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for _ in range(TRANSACTIONS_PER_THREAD):
        tenant = rng.choice(tenants)
        dice = rng.random()
        try:
            with db.tenant(tenant) as q:
                row = q.conn.execute(READ).fetchone()
                assert row is not None
                context, role, token_owners, token_count, account_owners = row
                if (
                    context != tenant
                    or role != "keen_app"
                    or token_owners != [tenant]
                    or token_count != TOKENS_PER_TENANT
                    or account_owners != [tenant]
                ):
                    out.add("leaks", f"tenant {tenant} saw {row}")
                if dice < 0.10:
                    # A write, then the service fails: the write must be rolled back.
                    create_token(q, name="rolled back")
                    raise Boom
                if dice < 0.15:
                    q.users.revoke_token(token_id=uuid.uuid4())  # not the caller's: KE006
                elif dice < 0.20:
                    q.conn.execute("SELECT 1 / 0")
            counts["committed"] += 1
        except (Boom, NotFound, psycopg.errors.DivisionByZero) as exc:
            counts[type(exc).__name__] += 1
            _check_handed_back(db, out)
        except Exception as exc:  # anything else is a failure of the test subject
            out.add("unexpected", f"{type(exc).__name__}: {exc}")
    with out.lock:
        out.counts.update(counts)


def run_workload(db: Database, tenants: list[uuid.UUID]) -> Outcome:
    """Run THREADS workers over `db`'s pool; return what they saw."""
    out = Outcome()
    threads = [
        threading.Thread(target=_worker, args=(db, tenants, seed, out), name=f"worker-{seed}")
        for seed in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def assert_isolated(db: Database, tenants: list[uuid.UUID], out: Outcome) -> None:
    """Assert the workload's outcome and the database state afterwards."""
    assert out.unexpected == []
    assert out.leaks == []
    assert out.dirty_connections == []
    assert sum(out.counts.values()) == THREADS * TRANSACTIONS_PER_THREAD
    # Every kind of failure happened, many times.
    for kind in ("committed", "Boom", "NotFound", "DivisionByZero"):
        assert out.counts[kind] > 100, out.counts
    # Rolled-back writes left nothing: each tenant still has exactly its seeded tokens.
    for tenant in tenants:
        with db.tenant(tenant) as q:
            assert len(q.users.list_auth_tokens()) == TOKENS_PER_TENANT
    # Every connection in the pool is clean once the workers are done.
    held = [db.pool.getconn() for _ in range(db.pool.max_size)]
    try:
        for conn in held:
            leftover = conn.execute(LEFTOVER).fetchone()
            conn.rollback()
            assert leftover == ("", "none", True)
    finally:
        for conn in held:
            db.pool.putconn(conn)


@pytest.fixture(scope="module")
def pooled_db(db_url: str) -> Iterator[Database]:
    settings = Settings(database_url=db_url, pool_min_size=POOL_SIZE, pool_max_size=POOL_SIZE)
    with Database(settings) as db:
        yield db


@pytest.mark.slow
def test_16_threads_50_tenants_one_pool_never_leak_a_tenant(pooled_db: Database) -> None:
    tenants = seed_tenants(pooled_db)
    out = run_workload(pooled_db, tenants)
    assert_isolated(pooled_db, tenants, out)


ASYNC_TASKS = 16
ASYNC_TRANSACTIONS_PER_TASK = 100


def run_async_workload(
    url: str, tenants: list[uuid.UUID], *, prepare: bool = True
) -> tuple[int, list[str], list[Any]]:
    """ASYNC_TASKS tasks over one AsyncDatabase pool of 4, each running transactions for
    random tenants, a fifth of them raising; return (errors, leaks, a leftover probe)."""
    leaks: list[str] = []

    async def task(seed: int, db: AsyncDatabase) -> int:
        rng, errors = random.Random(seed), 0
        for _ in range(ASYNC_TRANSACTIONS_PER_TASK):
            tenant = rng.choice(tenants)
            try:
                async with db.tenant(tenant) as q:
                    cur = await q.conn.execute(READ)
                    row = await cur.fetchone()
                    if row is None or row[0] != tenant or row[2] != [tenant]:
                        leaks.append(f"tenant {tenant} saw {row}")
                    if rng.random() < 0.2:
                        raise Boom
            except Boom:
                errors += 1
        return errors

    async def main() -> tuple[int, list[Any]]:
        settings = Settings(database_url=url, pool_min_size=4, pool_max_size=4, prepare=prepare)
        async with AsyncDatabase(settings) as db:
            errors = await asyncio.gather(*(task(seed, db) for seed in range(ASYNC_TASKS)))
            async with db.pool.connection() as conn:
                cur = await conn.execute(LEFTOVER)
                leftover = list(await cur.fetchone() or ())
        return sum(errors), leftover

    errors, leftover = asyncio.run(main())
    return errors, leaks, leftover


def test_async_tasks_over_one_pool_never_leak_a_tenant(db_url: str, pooled_db: Database) -> None:
    errors, leaks, leftover = run_async_workload(db_url, seed_tenants(pooled_db, 10))
    assert leaks == []
    assert errors > 0
    assert leftover == ["", "none", True]
