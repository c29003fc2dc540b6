"""Read-only reports on a streaming replica (`Database.read_only`), with a maximum lag.

A throwaway primary and a real replica built by `pg_basebackup -R` (keen_dev/
clusters.py). Where a transaction ran is asked of the server itself (`pg_is_in_recovery()`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from keen_dev.clusters import Cluster, cluster_dir
from keen_dev.ledger import credit, new_user

from keen_sql import replica as replica_module
from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database, Queries

Servers = tuple[Cluster, Cluster]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """A throwaway primary (migrated `keen`) and its streaming replica."""
    with cluster_dir("reads") as clusters:
        primary = clusters.keen("primary", wal_level="replica", max_wal_senders="4")
        yield primary, clusters.replica_of(primary, "replica")


def _settings(servers: Servers, max_lag_s: float = 5.0, **extra: Any) -> Settings:
    primary, replica = servers
    return Settings(
        database_url=primary.url("keen"),
        replica_url=replica.url("keen"),
        replica_max_lag_s=max_lag_s,
        pool_max_size=2,
        **extra,
    )


def _caught_up(servers: Servers, timeout: float = 30.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    primary, replica = servers
    with primary.connect("keen") as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    deadline = time.monotonic() + timeout
    with replica.connect("keen") as conn:
        while conn.execute(
            "SELECT pg_last_wal_replay_lsn() < %s::pg_lsn", (row[0],)
        ).fetchone() != (False,):
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.02)


def _server(q: Queries) -> str:
    row = q.conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return "replica" if row == (True,) else "primary"


def _report(q: Queries) -> list[Any]:
    day = timedelta(days=1)
    return q.analytics.usage_report(from_=date.today() - day, to=date.today() + day)


def _purchased(rows: list[Any]) -> Decimal:
    return sum((r.credits_purchased for r in rows), Decimal(0))


def test_usage_report_and_dashboard_read_from_a_fresh_replica(servers: Servers) -> None:
    primary, _ = servers
    user = new_user(primary.url("keen"))
    with Database(_settings(servers)) as db:
        with db.tenant(user) as q:
            credit(q, Decimal("12.5"))
        with db.tenant(user) as q:
            expected = _report(q)
        _caught_up(servers)
        with db.read_only(user) as q:
            assert _server(q) == "replica"
            got = _report(q)
        assert got == expected and _purchased(got) == Decimal("12.5")
        assert db.replica is not None
        assert (db.replica.reads, db.replica.fallbacks) == (1, 0)
        assert db.replica.last_lag_s == 0.0

    # The operators' dashboard: an analytics login, no tenant.
    with primary.connect("keen") as conn:
        conn.execute("SELECT keen.refresh_dashboard_metrics()")
        on_primary = conn.execute("SELECT * FROM keen.dashboard_metrics ORDER BY 1").fetchall()
    _caught_up(servers)
    analytics = Database(_settings(servers, app_role="keen_analytics"))
    with analytics, analytics.read_only() as q:
        assert _server(q) == "replica"
        rows = q.analytics.dashboard_metrics()
    assert [tuple(r) for r in rows] == on_primary
    assert sum(r.credits_sold for r in rows) >= Decimal("12.5")


@pytest.mark.slow
def test_beyond_the_lag_bound_reports_read_the_primary_then_the_replica_again(
    servers: Servers,
) -> None:
    primary, replica = servers
    user = new_user(primary.url("keen"))
    _caught_up(servers)
    with Database(_settings(servers, max_lag_s=0.3)) as db, replica.connect("keen") as standby:
        assert db.replica is not None
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            with db.tenant(user) as q:
                credit(q, Decimal("7"))
            # The replica receives the commit but does not replay it; lag grows past 0.3 s.
            deadline = time.monotonic() + 10
            while standby.execute(
                "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"
            ).fetchone() != (True,):
                assert time.monotonic() < deadline, "the replica did not receive the commit"
                time.sleep(0.02)
            time.sleep(0.5)
            with db.read_only(user) as q:
                assert _server(q) == "primary"
                assert _purchased(_report(q)) == Decimal("7"), "the primary has the new credit"
            assert db.replica.last_lag_s is not None and db.replica.last_lag_s > 0.3
            assert db.replica.fallbacks == 1
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
        _caught_up(servers)
        with db.read_only(user) as q:
            assert _server(q) == "replica"
            assert _purchased(_report(q)) == Decimal("7")
        assert db.replica.reads == 1


def test_a_write_in_a_read_only_transaction_raises_25006_on_either_server(
    servers: Servers,
) -> None:
    primary, _ = servers
    user = new_user(primary.url("keen"))
    _caught_up(servers)
    to_primary = Settings(database_url=primary.url("keen"), pool_max_size=2)
    for settings, where in ((_settings(servers), "replica"), (to_primary, "primary")):
        with Database(settings) as db:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), db.read_only(user) as q:
                assert _server(q) == where
                credit(q, Decimal("1"))
            with db.read_only(user) as q:  # the connection is clean afterwards
                assert _purchased(_report(q)) == Decimal("0")


def test_the_replica_pool_resets_session_state_before_the_next_tenant(servers: Servers) -> None:
    # As the primary's pool does (DISCARD ALL, then the pool's own settings): a session
    # setting left by tenant A on a replica connection is gone when tenant B reads on it.
    primary, _ = servers
    a, b = new_user(primary.url("keen")), new_user(primary.url("keen"))
    _caught_up(servers)
    settings = replace(_settings(servers), pool_min_size=1, pool_max_size=1)
    with Database(settings) as db:
        assert db.replica is not None
        with db.read_only(a) as q:
            assert _server(q) == "replica"
            pid = q.conn.info.backend_pid
            q.conn.execute("SELECT pg_catalog.set_config('application_name', 'tenant-a', false)")
            q.conn.execute("SELECT pg_catalog.set_config('statement_timeout', '0', false)")
        deadline = time.monotonic() + 5
        while (
            db.replica.pool.get_stats().get("pool_available", 0) < 1 and time.monotonic() < deadline
        ):
            time.sleep(0.01)  # the reset runs in the pool's worker
        with db.read_only(b) as q:
            assert _server(q) == "replica"
            assert q.conn.info.backend_pid == pid, "the test needs the same replica connection"
            name = q.conn.execute("SELECT pg_catalog.current_setting('application_name')")
            state = name.fetchone()
            timeout = q.conn.execute("SHOW statement_timeout").fetchone()
    assert state == (settings.application_name,)
    assert timeout is not None and timeout[0] != "0"


def test_a_replica_url_naming_a_primary_is_not_used(servers: Servers) -> None:
    primary, _ = servers
    user = new_user(primary.url("keen"))
    settings = Settings(
        database_url=primary.url("keen"), replica_url=primary.url("keen"), pool_max_size=2
    )
    with Database(settings) as db:
        with db.read_only(user) as q:
            assert _server(q) == "primary"
        assert db.replica is not None and db.replica.fallbacks == 1
        assert db.replica.last_lag_s is None


@pytest.mark.slow
def test_an_unreachable_replica_costs_one_short_wait_then_reads_go_to_the_primary(
    servers: Servers,
) -> None:
    primary, replica = servers
    user = new_user(primary.url("keen"))
    with Database(_settings(servers)) as db:
        assert db.replica is not None
        replica.stop("fast")
        try:
            t0 = time.monotonic()
            with db.read_only(user) as q:
                assert _server(q) == "primary"
            first = time.monotonic() - t0
            t0 = time.monotonic()
            with db.read_only(user) as q:
                assert _server(q) == "primary"
            second = time.monotonic() - t0
        finally:
            replica.start()
            replica.wait_ready("keen")
        assert first < replica_module.WAIT_S + 1.0
        assert second < 0.5, "the replica is not tried again at once"
        assert db.replica.fallbacks == 2 and db.replica.reads == 0


def test_without_a_replica_read_only_runs_on_the_primary(servers: Servers) -> None:
    primary, _ = servers
    user = uuid.UUID(str(new_user(primary.url("keen"))))
    with Database(Settings(database_url=primary.url("keen"), pool_max_size=2)) as db:
        assert db.replica is None
        with db.read_only(user) as q:
            assert _server(q) == "primary" and q.user_id == user
            assert _report(q)[0].credits_purchased == Decimal("0")


def test_async_read_only_reads_the_replica_then_the_primary_beyond_the_bound(
    servers: Servers,
) -> None:
    primary, replica = servers
    user = new_user(primary.url("keen"))
    with Database(_settings(servers)) as db, db.tenant(user) as q:
        credit(q, Decimal("3"))
    _caught_up(servers)
    day = timedelta(days=1)

    async def read(db: AsyncDatabase) -> tuple[bool, Decimal]:
        async with db.read_only(user) as q:
            cur = await q.conn.execute("SELECT pg_is_in_recovery()")
            row = await cur.fetchone()
            rows = await q.analytics.usage_report(from_=date.today() - day, to=date.today() + day)
        return row == (True,), _purchased(rows)

    async def scenario() -> list[tuple[bool, Decimal]]:
        async with AsyncDatabase(_settings(servers, max_lag_s=0.3)) as db:
            seen = [await read(db)]
            with replica.connect("keen") as standby:
                standby.execute("SELECT pg_wal_replay_pause()")
                try:
                    new_user(primary.url("keen"))  # a commit the replica cannot replay
                    await asyncio.sleep(0.6)
                    seen.append(await read(db))
                finally:
                    standby.execute("SELECT pg_wal_replay_resume()")
            assert db.replica is not None
            assert (db.replica.reads, db.replica.fallbacks) == (1, 1)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                async with db.read_only(user) as q:
                    await q.conn.execute("SELECT keen.add_credits(p_amount => 1)")
        return seen

    assert asyncio.run(scenario()) == [(True, Decimal("3")), (False, Decimal("3"))]
