"""The event listener across a server crash-restart, on a throwaway cluster of its own.

A listener follows a tenant while sessions run; the server is stopped in `immediate` mode (a
crash: every connection dies) and started again; more events are written while the listener
is still reconnecting. It must end up with exactly the tenant's log: nothing missed, nothing
twice, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from keen_dev.clusters import Cluster, cluster_dir
from keen_dev.ledger import make_user
from keen_queries.models import SessionEvent

from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.events import EventListener
from tests_py.test_events import PROGRESS, assert_in_order, logged, run_session


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A migrated throwaway cluster (database `keen`)."""
    with cluster_dir("events") as clusters:
        yield clusters.keen("events")


@pytest.mark.slow
def test_listener_resumes_after_a_server_crash_restart_with_no_gap_or_duplicate(
    cluster: Cluster,
) -> None:
    url = cluster.url("keen")
    with cluster.connect("keen") as conn:
        user = make_user(conn)
    received: list[SessionEvent] = []
    listener = EventListener(url, user, poll_interval=0.5, max_backoff=0.5, reconnect_timeout=60)
    listener.connect()
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            for event in listener.events(idle_timeout=0.5):
                received.append(event)

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        with Database(Settings(database_url=url, pool_max_size=2)) as db:
            for i in range(3):
                run_session(db, user, f"before-{i}")
        deadline = time.monotonic() + 20
        while len(received) < 3 * (PROGRESS + 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(received) == 3 * (PROGRESS + 2), "the listener follows before the crash"

        cluster.restart("immediate")
        cluster.wait_ready("keen")
        # Written at once after the restart, while the listener is still backing off.
        with Database(Settings(database_url=url, pool_max_size=2)) as db:
            for i in range(3):
                run_session(db, user, f"after-{i}")
            expected = logged(db, user)
        deadline = time.monotonic() + 30
        while len(received) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(timeout=30)
        listener.close()
    assert listener.reconnects >= 1
    assert len(expected) == 6 * (PROGRESS + 2)
    assert [e.id for e in received] == [e.id for e in expected]
    assert_in_order(received)
