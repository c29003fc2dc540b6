"""A server restart under load, on a throwaway cluster of this test's own.

The pool of a running `Database` must recover by itself (no new `Database`, no process
restart), and no call may report success for work that was not committed: every ledger entry
a worker saw succeed is in the ledger after the restart.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from keen_dev import ledger
from keen_dev.clusters import Cluster, cluster_dir

from keen_sql import backup
from keen_sql.config import Settings
from keen_sql.database import Database

WORKERS = 4


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A started throwaway cluster with a migrated database `keen`."""
    with cluster_dir("restart") as clusters:
        yield clusters.keen("server")


@pytest.mark.slow
def test_restart_under_load_pool_recovers_and_no_uncommitted_success(cluster: Cluster) -> None:
    with cluster.connect("keen") as conn:
        users = [ledger.make_user(conn) for _ in range(WORKERS)]
    settings = Settings(
        database_url=cluster.url("keen"), pool_min_size=2, pool_max_size=WORKERS, pool_timeout=2.0
    )
    succeeded: list[str] = []
    failures: list[str] = []
    after_restart: dict[int, int] = dict.fromkeys(range(WORKERS), 0)
    restarted = threading.Event()
    first_after: list[float] = []
    stop = threading.Event()

    def work(n: int, db: Database) -> None:
        i = 0
        while not stop.is_set():
            key = f"w{n}-{i}-{uuid.uuid4().hex[:6]}"
            i += 1
            try:
                with db.tenant(users[n]) as q:
                    ledger.credit(q, Decimal("1.0000"), key)
            except Exception as exc:  # every failure kind is counted, none may hide a commit
                failures.append(type(exc).__name__)
                time.sleep(0.02)
                continue
            succeeded.append(key)
            if restarted.is_set():
                after_restart[n] += 1
                first_after.append(time.monotonic())

    with Database(settings) as db:
        threads = [threading.Thread(target=work, args=(n, db)) for n in range(WORKERS)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            before = len(succeeded)
            t0 = time.monotonic()
            cluster.restart("immediate")  # a crash: every connection dies mid-flight
            up = time.monotonic()
            restarted.set()
            # The same Database keeps serving: every worker commits again after the restart.
            deadline = time.monotonic() + 30
            while min(after_restart.values()) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join()

    assert before > 0, "the load ran before the restart"
    assert min(after_restart.values()) >= 3, f"pool did not recover: {after_restart}"
    print(
        f"restart took {up - t0:.2f} s; first commit {min(first_after) - up:.2f} s after it;"
        f" {len(failures)} failed calls ({', '.join(sorted(set(failures)))}), {len(succeeded)} ok"
    )
    with cluster.connect("keen") as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8"
        ).fetchone()
        assert row is not None and row[0] < time.monotonic() - t0 + 1, "the server restarted"
        committed = ledger.idempotency_keys(conn)
        missing = [k for k in succeeded if k not in committed]
        assert missing == [], "calls reported success for work that was not committed"
        assert backup.run_verifier(conn, "verify_ledger") == []
