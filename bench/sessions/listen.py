"""Events per second delivered to one EventListener while 8 pgbench clients write them.

Usage: listen.py URL SECONDS CLIENTS SCRIPT. Prints one JSON line: live delivery (events
delivered while the writers ran, the writers' rate, and how long the listener needed after
the writers stopped to catch up), then a replay of the whole log by a new listener.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from uuid import UUID

import psycopg

from keen_sql.events import EventListener

url, seconds, clients, script = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with psycopg.connect(url) as conn:
    row = conn.execute("SELECT md5('bench-one')::uuid").fetchone()
    assert row is not None
    user: UUID = row[0]
    base = conn.execute("SELECT coalesce(max(id), 0) FROM keen.session_events").fetchone()
    assert base is not None

listener = EventListener(url, user, after_id=base[0], poll_interval=1.0)
listener.connect()
arrivals: list[float] = []
stop = threading.Event()


def consume() -> None:
    for _event in listener.events(idle_timeout=5):
        arrivals.append(time.monotonic())
        if stop.is_set() and listener.last_event_id >= final_id:
            return


final_id = 2**62
reader = threading.Thread(target=consume)
reader.start()
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
with psycopg.connect(url) as conn:
    row = conn.execute(
        "SELECT max(id), count(*) FROM keen.session_events WHERE id > %s", (base[0],)
    ).fetchone()
    assert row is not None
    final_id, written = row
stop.set()
reader.join()
listener.close()
caught_up = arrivals[-1] if arrivals else writers_done
live = sum(1 for t in arrivals if t <= writers_done)

replay_start = time.monotonic()
with EventListener(url, user, after_id=base[0], batch_size=1000) as replayer:
    replayed = sum(1 for _ in replayer.events(idle_timeout=0.2))
replay_secs = time.monotonic() - replay_start - 0.2

print(
    json.dumps(
        {
            "written": written,
            "delivered": len(arrivals),
            "writer_events_per_s": round(written / (writers_done - started), 1),
            "live_delivered_per_s": round(live / (writers_done - started), 1),
            "catch_up_after_writers_s": round(max(0.0, caught_up - writers_done), 3),
            "replayed": replayed,
            "replay_events_per_s": round(replayed / replay_secs, 1),
            "reconnects": listener.reconnects,
            "pgbench_tps": next(
                (ln.split()[2] for ln in out.splitlines() if ln.startswith("tps =")), None
            ),
        }
    )
)
