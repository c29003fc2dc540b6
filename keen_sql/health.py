"""Operational health of a keen database: what an operator or a probe needs at a glance.

`check_health()` runs read-only checks, each ending `ok`, `warn`, `fail` or `skip`:
server reachable, migrations current (applied vs migrations/), server connection figures and
the pool's (when a `Database` is given), replication lag (primary-side from
pg_stat_replication, and measured on a replica when one is configured), long-running
transactions, stale WebSocket connections (the reaper's backlog) and the periodic jobs'
last runs in pg_cron (`keen_sql.schedule`). The report is healthy
when nothing failed; warnings are for a human to look at.

Run it as a superuser or an owner login: the stale-connection count reads across tenants.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import psycopg

from keen_sql import migrations, schedule
from keen_sql.backup import applied_migrations

if TYPE_CHECKING:
    from keen_sql.database import Database

__all__ = ["Check", "HealthReport", "Thresholds", "check_health"]

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    """One health check: its status, a one-line summary and the figures behind it."""

    name: str
    status: Status
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HealthReport:
    """Every check of one `check_health()` run; `ok` when none failed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(c.status != "fail" for c in self.checks)

    def by_name(self, name: str) -> Check:
        """Return the check called `name`."""
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}

    def render(self) -> str:
        """Return the report as aligned text lines, one per check."""
        width = max(len(c.name) for c in self.checks)
        return "\n".join(f"{c.status:<4}  {c.name:<{width}}  {c.summary}" for c in self.checks)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a figure turns into a warning.

    Attributes:
        long_transaction_s: a transaction open longer than this is reported.
        stale_connection_s: an active WebSocket connection without a ping for longer is stale
            (and server connections idle for longer are counted).
        replica_lag_s: replay lag above this warns.
        replica_lag_bytes: WAL not yet replayed on the replica above this warns.
        connections_used: share of usable connection slots above which to warn.
    """

    long_transaction_s: float = 60.0
    stale_connection_s: float = 300.0
    replica_lag_s: float = 30.0
    replica_lag_bytes: int = 64 * 1024 * 1024
    connections_used: float = 0.8


_CONNECTIONS = """
SELECT pg_catalog.current_setting('max_connections')::int
       - pg_catalog.current_setting('superuser_reserved_connections')::int,
       pg_catalog.count(*) FILTER (WHERE backend_type = 'client backend'),
       pg_catalog.count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active'),
       pg_catalog.count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle'),
       pg_catalog.count(*) FILTER (WHERE backend_type = 'client backend'
                                     AND state LIKE 'idle in transaction%%'),
       pg_catalog.count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle'
                                     AND state_change < pg_catalog.now()
                                                      - pg_catalog.make_interval(secs => %s))
FROM pg_catalog.pg_stat_activity
"""

_LONG_TRANSACTIONS = """
SELECT pid, usename, datname, state,
       round(extract(epoch FROM pg_catalog.now() - xact_start)::numeric, 1)::float8,
       wait_event_type, wait_event, left(query, 200)
FROM pg_catalog.pg_stat_activity
WHERE xact_start IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()
  AND backend_type = 'client backend'
  AND pg_catalog.now() - xact_start > pg_catalog.make_interval(secs => %s)
ORDER BY xact_start
"""

_REPLICATION = """
SELECT application_name, client_addr::text, state, sync_state,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn)::bigint,
       extract(epoch FROM replay_lag)::float8
FROM pg_catalog.pg_stat_replication
ORDER BY application_name
"""

_STALE_CONNECTIONS = """
SELECT pg_catalog.count(*) FILTER (WHERE connection_status = 'active'
                                     AND last_ping_at < pg_catalog.now()
                                                      - pg_catalog.make_interval(secs => %s)),
       pg_catalog.count(*) FILTER (WHERE connection_status = 'stale'),
       pg_catalog.count(*) FILTER (WHERE connection_status = 'active')
FROM keen.websocket_connections
"""


def _migrations(conn: psycopg.Connection[Any]) -> Check:
    shipped = [m.id for m in migrations.read()]
    applied = applied_migrations(conn)
    pending = [m for m in shipped if m not in applied]
    unknown = [m for m in applied if m not in shipped]
    data = {"applied": applied, "pending": pending, "unknown": unknown}
    if pending or unknown:
        parts = [f"{len(pending)} pending ({', '.join(pending)})"] if pending else []
        if unknown:
            parts.append(f"{len(unknown)} applied but not in migrations/ ({', '.join(unknown)})")
        return Check("migrations", "fail", "; ".join(parts), data)
    current = applied[-1] if applied else "none"
    return Check("migrations", "ok", f"current: {len(applied)} applied, last {current}", data)


def _connections(conn: psycopg.Connection[Any], limits: Thresholds) -> Check:
    row = conn.execute(_CONNECTIONS, (limits.stale_connection_s,)).fetchone()
    assert row is not None
    usable, used, active, idle, idle_in_tx, idle_long = row
    data = {
        "usable": usable,
        "used": used,
        "active": active,
        "idle": idle,
        "idle_in_transaction": idle_in_tx,
        "idle_longer_than_stale": idle_long,
    }
    summary = (
        f"{used}/{usable} used ({active} active, {idle} idle of which {idle_long} for over"
        f" {limits.stale_connection_s:g} s, {idle_in_tx} idle in transaction)"
    )
    return Check(
        "connections", "warn" if used > limits.connections_used * usable else "ok", summary, data
    )


def _pool(db: Database | None) -> Check:
    if db is None:
        return Check("pool", "skip", "no pool in this process (see connections for the server)")
    health = db.health()
    stats = db.pool.get_stats()
    data = {**asdict(health), **stats}
    summary = (
        f"size {health.pool_size}"
        f" (min {db.settings.pool_min_size}, max {db.settings.pool_max_size}),"
        f" {health.pool_available} available, {health.requests_waiting} waiting,"
        f" answered in {health.latency_ms:.1f} ms"
    )
    if not health.ok:
        return Check("pool", "fail", f"no pooled connection answers: {health.error}", data)
    return Check("pool", "warn" if health.requests_waiting else "ok", summary, data)


def _replication(
    conn: psycopg.Connection[Any], replica_url: str | None, limits: Thresholds, timeout: float
) -> Check:
    rows = conn.execute(_REPLICATION).fetchall() if not _in_recovery(conn) else []
    standbys = [
        {
            "application_name": r[0],
            "client_addr": r[1],
            "state": r[2],
            "sync_state": r[3],
            "replay_lag_bytes": r[4],
            "replay_lag_s": r[5],
        }
        for r in rows
    ]
    data: dict[str, Any] = {"standbys": standbys}
    if replica_url is None:
        if not standbys:
            return Check("replication", "skip", "no replica configured", data)
        worst = max((s["replay_lag_s"] or 0.0) for s in standbys)
        status: Status = "warn" if worst > limits.replica_lag_s else "ok"
        return Check(
            "replication", status, f"{len(standbys)} standby(s), replay lag {worst:.1f} s", data
        )
    try:
        with psycopg.connect(replica_url, autocommit=True, connect_timeout=int(timeout)) as rconn:
            row = rconn.execute(
                "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_last_wal_replay_lsn()::text,"
                " extract(epoch FROM pg_catalog.now()"
                "   - pg_catalog.pg_last_xact_replay_timestamp())::float8"
            ).fetchone()
    except psycopg.Error as exc:
        return Check("replication", "fail", f"replica unreachable: {exc}".strip(), data)
    assert row is not None
    in_recovery, replay_lsn, since_last_replay = row
    if not in_recovery or replay_lsn is None:
        return Check("replication", "fail", "the configured replica is not in recovery", data)
    lag_row = conn.execute(
        "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), %s::pg_lsn)::bigint",
        (replay_lsn,),
    ).fetchone()
    assert lag_row is not None
    lag_bytes = max(0, int(lag_row[0]))
    # Time since the last replayed commit is lag only while WAL is still waiting to be
    # replayed; a caught-up replica of an idle primary has no lag, however old that commit.
    # A replica that has replayed no commit since it started cannot tell the time lag.
    lag_s = 0.0 if lag_bytes == 0 else since_last_replay
    data.update(replica_lag_bytes=lag_bytes, replica_lag_s=lag_s, replica_replay_lsn=replay_lsn)
    behind = lag_bytes > limits.replica_lag_bytes or (lag_s or 0.0) > limits.replica_lag_s
    seconds = "unknown" if lag_s is None else f"{lag_s:.1f}"
    summary = f"replica {lag_bytes} bytes, {seconds} s behind"
    return Check("replication", "warn" if behind else "ok", summary, data)


def _in_recovery(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def _long_transactions(conn: psycopg.Connection[Any], limits: Thresholds) -> Check:
    rows = conn.execute(_LONG_TRANSACTIONS, (limits.long_transaction_s,)).fetchall()
    found = [
        {
            "pid": r[0],
            "user": r[1],
            "database": r[2],
            "state": r[3],
            "age_s": r[4],
            "wait_event_type": r[5],
            "wait_event": r[6],
            "query": r[7],
        }
        for r in rows
    ]
    if not found:
        return Check(
            "long_transactions", "ok", f"none open longer than {limits.long_transaction_s:g} s"
        )
    oldest = found[0]
    summary = (
        f"{len(found)} open longer than {limits.long_transaction_s:g} s; oldest pid"
        f" {oldest['pid']} ({oldest['state']}, {oldest['age_s']:g} s)"
    )
    return Check("long_transactions", "warn", summary, {"transactions": found})


def _stale_connections(conn: psycopg.Connection[Any], limits: Thresholds) -> Check:
    exists = conn.execute(
        "SELECT pg_catalog.to_regclass('keen.websocket_connections') IS NOT NULL"
    ).fetchone()
    if exists != (True,):
        return Check("stale_connections", "skip", "keen.websocket_connections does not exist")
    row = conn.execute(_STALE_CONNECTIONS, (limits.stale_connection_s,)).fetchone()
    assert row is not None
    unpinged, marked, active = row
    data = {"unpinged": unpinged, "marked_stale": marked, "active": active}
    summary = (
        f"{unpinged} of {active} active without a ping for {limits.stale_connection_s:g} s"
        f" (to reap); {marked} marked stale"
    )
    return Check("stale_connections", "warn" if unpinged else "ok", summary, data)


def _scheduled_jobs(database_url: str) -> Check:
    try:
        jobs = schedule.job_status(database_url)
    except psycopg.errors.InsufficientPrivilege as exc:
        # pg_cron's schema is not readable by every login; each login sees its own jobs.
        summary = f"this login may not read pg_cron's jobs ({exc.diag.message_primary})"
        return Check("scheduled_jobs", "warn", summary)
    if jobs is None:
        return Check("scheduled_jobs", "skip", "pg_cron not on this server (jobs run from cron?)")
    data: dict[str, Any] = {"jobs": [asdict(j) for j in jobs]}
    missing = [j.task for j in schedule.JOBS if j.task not in {s.task for s in jobs}]
    data["missing"] = missing
    failed = [j for j in jobs if j.failed]
    if failed:
        parts = [
            f"{j.task} ({j.last_end.isoformat(timespec='seconds') if j.last_end else '?'}:"
            f" {' '.join((j.last_message or '').split())})"
            for j in failed
        ]
        return Check("scheduled_jobs", "fail", f"last run failed: {'; '.join(parts)}", data)
    runs = sum(j.runs_24h for j in jobs)
    failures = sum(j.failures_24h for j in jobs)
    summary = f"{len(jobs)} job(s), {runs} run(s) and {failures} failure(s) in 24 h"
    problems = [f"{', '.join(missing)} not scheduled (keen-sql schedule)"] if missing else []
    problems += [f"{j.task} inactive" for j in jobs if not j.active]
    problems += [f"{j.task} failed {j.failures_24h}x in 24 h" for j in jobs if j.failures_24h]
    if problems:
        return Check("scheduled_jobs", "warn", f"{summary}; {'; '.join(problems)}", data)
    return Check("scheduled_jobs", "ok", f"{summary}; every last run succeeded", data)


def check_health(
    database_url: str,
    *,
    db: Database | None = None,
    replica_url: str | None = None,
    thresholds: Thresholds | None = None,
    timeout: float = 5.0,
) -> HealthReport:
    """Run every health check against `database_url`; never raises for a database failure.

    Args:
        database_url: the primary (or the server to check), as an operator login.
        db: a `Database` of this process, whose pool figures to report.
        replica_url: a replica whose replay lag to measure against the primary.
        thresholds: when figures turn into warnings.
        timeout: seconds to wait for a connection.
    """
    limits = thresholds or Thresholds()
    report = HealthReport()
    t0 = time.perf_counter()
    try:
        conn = psycopg.connect(database_url, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        report.checks.append(Check("server", "fail", f"unreachable: {exc}".strip()))
        report.checks.append(_pool(db))
        return report
    with conn:
        row = conn.execute(
            "SELECT pg_catalog.current_setting('server_version'), pg_catalog.pg_is_in_recovery(),"
            " extract(epoch FROM pg_catalog.now() - pg_catalog.pg_postmaster_start_time())::float8"
        ).fetchone()
        assert row is not None
        version, in_recovery, uptime = row
        latency = (time.perf_counter() - t0) * 1000.0
        role = "standby" if in_recovery else "primary"
        report.checks.append(
            Check(
                "server",
                "ok",
                f"PostgreSQL {version} {role}, up {uptime / 3600:.1f} h,"
                f" connected in {latency:.0f} ms",
                {"version": version, "in_recovery": in_recovery, "uptime_s": uptime},
            )
        )
        checks: list[tuple[str, Callable[[], Check]]] = [
            ("migrations", lambda: _migrations(conn)),
            ("connections", lambda: _connections(conn, limits)),
            ("pool", lambda: _pool(db)),
            ("replication", lambda: _replication(conn, replica_url, limits, timeout)),
            ("long_transactions", lambda: _long_transactions(conn, limits)),
            ("stale_connections", lambda: _stale_connections(conn, limits)),
            ("scheduled_jobs", lambda: _scheduled_jobs(database_url)),
        ]
        for name, run in checks:
            try:
                report.checks.append(run())
            except psycopg.Error as exc:
                # e.g. a login without the privileges the check needs: report, go on.
                summary = f"could not check: {type(exc).__name__}: {exc}".strip()
                report.checks.append(Check(name, "fail", summary))
    return report
