"""The pool-isolation workload through a real PgBouncer in transaction pooling mode.

The test starts PgBouncer (Debian package, 1.18+) on a free loopback port with its own
configuration, in front of the test server, and stops it afterwards. Transaction pooling
hands every transaction to any server connection, so anything tenant-specific left at
session level would surface in another client's transaction; server-side prepared
statements are off (KEEN_PREPARE=0), as PgBouncer 1.18 cannot carry them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from keen_dev.ledger import credit

from keen_sql import errors
from keen_sql.config import Settings
from keen_sql.database import Database
from tests_py.tenants import register
from tests_py.test_isolation import (
    POOL_SIZE,
    assert_isolated,
    run_async_workload,
    run_workload,
    seed_tenants,
)

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SERVER_POOL_SIZE = 4  # fewer server connections than clients: transactions really move


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _server_address(url: str) -> tuple[str, str, str, str]:
    """Return (host, port, user, dbname) of a libpq URL (host may be a socket directory)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or parts.hostname or "127.0.0.1"
    port = query.get("port") or str(parts.port or 5432)
    user = query.get("user") or parts.username or "postgres"
    dbname = query.get("dbname") or parts.path.lstrip("/")
    return host, port, user, dbname


@pytest.fixture(scope="module")
def pgbouncer_url(db_url: str) -> Iterator[str]:
    """URL of the module's database through a PgBouncer started for this module."""
    if not os.path.exists(PGBOUNCER):
        pytest.fail(f"pgbouncer not installed at {PGBOUNCER} (Debian package pgbouncer)")
    host, port, user, dbname = _server_address(db_url)
    listen = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="keen-pgbouncer-"))
    config = workdir / "pgbouncer.ini"
    config.write_text(
        f"""[databases]
{dbname} = host={host} port={port} user={user} dbname={dbname}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {SERVER_POOL_SIZE}
max_client_conn = 100
server_reset_query = DISCARD ALL
server_reset_query_always = 1
ignore_startup_parameters = extra_float_digits
logfile = {workdir / "pgbouncer.log"}
pidfile = {workdir / "pgbouncer.pid"}
"""
    )
    command = [PGBOUNCER, "-q", str(config)]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        shutil.chown(workdir, "postgres")
        for f in workdir.iterdir():
            shutil.chown(f, "postgres")
        command = [PGBOUNCER, "-q", "-u", "postgres", str(config)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"postgresql://{user}@127.0.0.1:{listen}/{dbname}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(url, prepare_threshold=None, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = workdir / "pgbouncer.log"
                    raise RuntimeError(
                        "pgbouncer did not start: "
                        + (log.read_text() if log.exists() else "")
                        + (proc.stdout.read().decode() if proc.stdout else "")
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def bounced_db(pgbouncer_url: str) -> Iterator[Database]:
    settings = Settings(
        database_url=pgbouncer_url, pool_min_size=POOL_SIZE, pool_max_size=POOL_SIZE, prepare=False
    )
    with Database(settings) as db:
        yield db


@pytest.mark.slow
def test_16_threads_50_tenants_through_pgbouncer_transaction_pooling_never_leak(
    bounced_db: Database,
) -> None:
    with bounced_db.service() as q:
        row = q.conn.execute("SHOW application_name").fetchone()
    assert row is not None  # we are talking to the server through the bouncer
    tenants = seed_tenants(bounced_db)
    out = run_workload(bounced_db, tenants)
    assert_isolated(bounced_db, tenants, out)


def test_async_tasks_through_pgbouncer_never_leak_a_tenant(
    pgbouncer_url: str, bounced_db: Database
) -> None:
    tenants = seed_tenants(bounced_db, 10)
    errors, leaks, leftover = run_async_workload(pgbouncer_url, tenants, prepare=False)
    assert leaks == []
    assert errors > 0
    assert leftover == ["", "none", True]


def test_prepared_statements_off_behind_pgbouncer(bounced_db: Database) -> None:
    # The same statement many times: with prepare_threshold=None nothing is ever prepared,
    # which is what keeps PgBouncer 1.18 transaction pooling working.
    for _ in range(20):
        with bounced_db.service() as q:
            assert q.conn.prepare_threshold is None
            q.conn.execute("SELECT 1").fetchone()


def test_one_trip_deductions_through_pgbouncer_charge_each_tenant_exactly(
    bounced_db: Database,
) -> None:
    """Database.deduct_credits' pipeline (BEGIN … COMMIT, one Sync) through transaction pooling:
    8 threads charge 4 tenants, overdrafts included; every tenant ends at its exact balance."""
    tenants = seed_tenants(bounced_db, 4)
    for tenant in tenants:
        with bounced_db.tenant(tenant) as q:
            credit(q, Decimal("0.50"))
    refused: list[str] = []
    unexpected: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(40):  # 8 threads x 40 = 320 charges of 0.01, 80 per tenant of 50
            tenant = tenants[(n + i) % len(tenants)]
            try:
                row = bounced_db.deduct_credits(tenant, amount=Decimal("0.01"))
            except errors.InsufficientCredits:
                with lock:
                    refused.append(str(tenant))
            except Exception as exc:  # a thread's failure is the test's
                with lock:
                    unexpected.append(repr(exc))
            else:
                if row.user_id != tenant:
                    with lock:
                        unexpected.append(f"charged {row.user_id} for {tenant}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert unexpected == []
    assert sorted(refused) == sorted(str(t) for t in tenants for _ in range(30))
    for tenant in tenants:
        with bounced_db.tenant(tenant) as q:
            account = q.credits.credit_balance()
            charges = q.credits.list_credit_transactions(limit=100)
        assert account is not None and account.current_balance == Decimal("0.00")
        assert {r.user_id for r in charges} == {tenant} and len(charges) == 51


def test_session_state_left_on_a_server_connection_never_reaches_another_tenant(
    pgbouncer_url: str, bounced_db: Database
) -> None:
    # Finding 15 behind transaction pooling: a client (an attacker's own, without keen's
    # pool reset) leaves a session-level setting on every server connection it gets;
    # PgBouncer's server_reset_query (DISCARD ALL, server_reset_query_always) clears it
    # before another client's transaction runs there.
    b = register(bounced_db, "vic")
    with psycopg.connect(pgbouncer_url, prepare_threshold=None, autocommit=True) as rogue:
        for _ in range(SERVER_POOL_SIZE * 4):
            rogue.execute("SELECT pg_catalog.set_config('application_name', 'tenant-a', false)")
    seen = set()
    for _ in range(SERVER_POOL_SIZE * 4):
        with bounced_db.tenant(b) as q:
            row = q.conn.execute("SELECT pg_catalog.current_setting('application_name')").fetchone()
            assert row is not None
            seen.add(row[0])
    assert "tenant-a" not in seen
