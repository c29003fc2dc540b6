"""CPU time per deduction of one backend, read from /proc: a figure the machine's load hides less.

profile_loop.sql measures wall time, which on a shared 2-core machine at load 20 is mostly
waiting for a core. This runs the same loop (N deductions over setup.sql's 10,000 accounts,
one DO block as keen_app, the tenant context set per call) and divides the backend's own
utime + stime (/proc/<pid>/stat, so the server must run on this machine) by N.

Usage: .venv/bin/python bench/credits/cpu_per_deduction.py DATABASE_URL [N=3000]
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

LOOP = """
DO $$
BEGIN
  FOR i IN 1..{n} LOOP
    PERFORM set_config('app.current_user_id',
                       md5('bench-' || (1 + (i * 7919) % 10000))::uuid::text, true);
    PERFORM keen.deduct_credits(p_amount => 0.0100, p_description => 'bench',
                                p_idempotency_key => gen_random_uuid()::text);
  END LOOP;
END $$
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = int(row[0])
        conn.execute("SET ROLE keen_app")
        conn.execute(LOOP.format(n=200))  # warm-up: the functions' plans are cached
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        conn.execute(LOOP.format(n=n))
        cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
    print(
        f"cpu us per deduction: {(cpu1 - cpu0) * 1e6 / n:.1f}"
        f" (wall {(wall1 - wall0) * 1e6 / n:.1f}, load {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
