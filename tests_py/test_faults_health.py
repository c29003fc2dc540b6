"""keen_sql.health: each check seen healthy and seen failing or warning, on real servers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from keen_dev import ledger
from keen_dev.clusters import Cluster, cluster_dir
from psycopg import sql

from keen_sql import cli, migrations
from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.health import Thresholds, check_health


def test_health_of_a_migrated_database_is_ok(db_url: str) -> None:
    report = check_health(db_url)
    assert report.ok, report.render()
    assert report.by_name("server").status == "ok"
    assert report.by_name("migrations").data["pending"] == []
    connections = report.by_name("connections").data
    assert connections["used"] >= 1 and connections["idle_longer_than_stale"] >= 0
    assert report.by_name("replication").status == "skip"
    assert report.by_name("pool").status == "skip"


def test_health_fails_with_pending_migrations_and_cli_exits_1(
    empty_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = check_health(empty_db_url)
    check = report.by_name("migrations")
    assert check.status == "fail" and not report.ok
    assert check.data["pending"] == [m.id for m in migrations.status(empty_db_url)]

    assert cli.main(["--database-url", empty_db_url, "health", "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False


def test_health_reports_pool_figures_of_a_database(db_url: str) -> None:
    with Database(Settings(database_url=db_url, pool_min_size=1, pool_max_size=3)) as db:
        check = check_health(db_url, db=db).by_name("pool")
    assert check.status == "ok"
    assert check.data["pool_max"] == 3 and check.data["requests_waiting"] == 0


def test_health_warns_of_a_long_running_transaction(db_url: str) -> None:
    with psycopg.connect(db_url) as idle_in_tx:
        row = idle_in_tx.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        time.sleep(0.3)
        check = check_health(db_url, thresholds=Thresholds(long_transaction_s=0.2)).by_name(
            "long_transactions"
        )
        idle_in_tx.rollback()
    assert check.status == "warn"
    assert row[0] in [t["pid"] for t in check.data["transactions"]]


def test_health_counts_stale_websocket_connections(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        user = ledger.make_user(conn)
        conn.execute(
            "INSERT INTO keen.websocket_connections"
            " (user_id, connection_id, client_ip, client_type, connected_at, last_ping_at)"
            " VALUES (%s, 'ws-stale', '10.0.0.1', 'web', now() - interval '2 hours',"
            " now() - interval '1 hour')",
            (user,),
        )
    check = check_health(db_url).by_name("stale_connections")
    assert check.status == "warn" and check.data["unpinged"] >= 1


def test_health_of_an_unreachable_server_fails(tmp_path: Path) -> None:
    report = check_health(f"postgresql://postgres@/postgres?host={tmp_path}&port=1", timeout=1)
    assert report.by_name("server").status == "fail"
    assert "unreachable" in report.by_name("server").summary
    assert not report.ok


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[Cluster, Cluster]]:
    """A throwaway primary (migrated `keen`) and a streaming replica of it."""
    with cluster_dir("replica") as clusters:
        primary = clusters.keen("primary", wal_level="replica", max_wal_senders="4")
        yield primary, clusters.replica_of(primary, "replica")


@pytest.mark.slow
def test_health_measures_replica_lag_and_warns_when_replay_stalls(
    primary_and_replica: tuple[Cluster, Cluster],
) -> None:
    primary, replica = primary_and_replica
    limits = Thresholds(replica_lag_s=0.2)
    report = check_health(primary.url("keen"), replica_url=replica.url("keen"), thresholds=limits)
    check = report.by_name("replication")
    assert report.ok, report.render()
    assert check.status == "ok" and len(check.data["standbys"]) == 1

    # A commit the replica has replayed, then replay paused and a commit it has not.
    with primary.connect("keen") as conn:
        replayed = ledger.make_user(conn)
    with replica.connect("keen") as conn:
        for _ in range(600):
            if conn.execute("SELECT 1 FROM keen.users WHERE id = %s", (replayed,)).fetchone():
                break
            time.sleep(0.01)
        conn.execute("SELECT pg_wal_replay_pause()")
    with primary.connect("keen") as conn:
        ledger.make_user(conn)
    time.sleep(0.5)
    check = check_health(
        primary.url("keen"), replica_url=replica.url("keen"), thresholds=limits
    ).by_name("replication")
    assert check.status == "warn"
    assert check.data["replica_lag_bytes"] > 0 and check.data["replica_lag_s"] > 0.2

    standby_view = check_health(replica.url("keen"))
    assert "standby" in standby_view.by_name("server").summary
    assert standby_view.by_name("migrations").status == "ok"


def test_health_as_an_unprivileged_login_reports_instead_of_raising(
    admin_url: str, db_url: str
) -> None:
    name = f"keen_test_health_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        url = db_url.replace("postgresql://postgres@", f"postgresql://{name}@", 1)
        report = check_health(url)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    assert report.by_name("server").status == "ok"
    migrations_check = report.by_name("migrations")
    assert migrations_check.status == "fail" and "could not check" in migrations_check.summary
    assert not report.ok
