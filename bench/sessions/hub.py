"""Events per second an EventHub delivers to 1,000 subscribers, and the connections it uses.

Usage: hub.py URL SECONDS CLIENTS SCRIPT. One EventHub (one LISTEN connection, a pool of 3)
follows the 1,000 tenants bench-fan0 … bench-fan999 of setup.sql while pgbench CLIENTS run
SCRIPT (progress reports on random tenants of those). Prints one JSON line: events written
and delivered, the rates, the catch-up time after the writers stopped, the most server
connections the hub held at once (sampled in pg_stat_activity by application name), and
whether each subscriber received exactly its tenant's events in order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from uuid import UUID

import psycopg

from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.events import EventHub

url, seconds, clients, script = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
USERS = 1000
POOL = 3
with psycopg.connect(url) as conn:
    users: list[UUID] = [
        r[0]
        for r in conn.execute(
            "SELECT md5('bench-fan' || n)::uuid FROM generate_series(0, %s) AS n", (USERS - 1,)
        ).fetchall()
    ]
    row = conn.execute("SELECT coalesce(max(id), 0) FROM keen.session_events").fetchone()
    assert row is not None
    base: int = row[0]

sep = "&" if "?" in url else "?"
settings = Settings(
    database_url=f"{url}{sep}application_name=bench-hub", pool_min_size=1, pool_max_size=POOL
)
most_connections = 0
stop_sampling = threading.Event()


def sample_connections() -> None:
    global most_connections
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop_sampling.is_set():
            r = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench-hub'"
            ).fetchone()
            most_connections = max(most_connections, r[0] if r else 0)
            stop_sampling.wait(0.1)


received: dict[UUID, list[int]] = {u: [] for u in users}
with Database(settings) as db, EventHub(db, poll_interval=1.0) as hub:
    subs = {u: hub.subscribe(u, after_id=base) for u in users}
    sampler = threading.Thread(target=sample_connections)
    sampler.start()
    started = time.monotonic()
    out = subprocess.run(
        [
            "pgbench",
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            script,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    writers_done = time.monotonic()
    delivered_live = hub.delivered
    with psycopg.connect(url) as conn:
        r = conn.execute(
            "SELECT count(*) FROM keen.session_events WHERE id > %s AND user_id = ANY(%s)",
            (base, users),
        ).fetchone()
        assert r is not None
        written: int = r[0]
    while hub.delivered < written and time.monotonic() - writers_done < 60:
        time.sleep(0.01)
    caught_up = time.monotonic()
    stop_sampling.set()
    sampler.join()
    for u, sub in subs.items():
        while (event := sub.get(timeout=0)) is not None:
            received[u].append(event.id)
    rounds = hub.rounds

with psycopg.connect(url) as conn:
    logged: dict[UUID, list[int]] = {u: [] for u in users}
    for user_id, event_id in conn.execute(
        "SELECT user_id, id FROM keen.session_events WHERE id > %s AND user_id = ANY(%s)"
        " ORDER BY id",
        (base, users),
    ).fetchall():
        logged[user_id].append(event_id)
print(
    json.dumps(
        {
            "subscribers": USERS,
            "written": written,
            "delivered": sum(len(v) for v in received.values()),
            "each_subscriber_exactly_its_events": received == logged,
            "writer_events_per_s": round(written / (writers_done - started), 1),
            "live_delivered_per_s": round(delivered_live / (writers_done - started), 1),
            "catch_up_after_writers_s": round(caught_up - writers_done, 3),
            "read_rounds": rounds,
            "hub_server_connections_max": most_connections,
            "pool_max_size": POOL,
            "pgbench_tps": next(
                (ln.split()[2] for ln in out.splitlines() if ln.startswith("tps =")), None
            ),
        }
    )
)
