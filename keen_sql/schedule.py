"""The periodic jobs of a keen database, scheduled in pg_cron, and their last runs.

Five operator jobs keep a keen database in shape: the dashboard refresh, the sweep of
expired credit holds, the reaper of silent WebSocket connections, the end of service
transactions left idle (which a service session cannot exempt itself from) and the event
log's retention. `schedule()` puts them in pg_cron (`cron.schedule_in_database`, so pg_cron may
live in another database of the server, `cron.database_name`); each job is named
`keen:<database>:<task>`, so running it again replaces the jobs instead of adding copies,
and several keen databases on one server keep their own. `unschedule()` removes them and
`job_status()` reads their last runs from `cron.job_run_details` (`keen-sql health`).

pg_cron must be preloaded (`shared_preload_libraries = 'pg_cron'`). A job runs as the login
that scheduled it: schedule as an operator login (a superuser, or a member of `keen_owner`
granted USAGE on schema `cron` and EXECUTE on `cron.schedule_in_database`). Servers without
pg_cron run the same calls from cron (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.conninfo import make_conninfo

__all__ = [
    "JOBS",
    "Job",
    "JobStatus",
    "ScheduleError",
    "cron_database",
    "cron_url",
    "job_status",
    "schedule",
    "unschedule",
]


class ScheduleError(Exception):
    """pg_cron is not usable on this server (not preloaded, or not installable by this login)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One periodic job: its task name, default cron schedule and the SQL it runs."""

    task: str
    schedule: str
    command: LiteralString
    what: str


# The periodic jobs; pg_cron 1.4 reads schedules in GMT.
JOBS: tuple[Job, ...] = (
    Job(
        "refresh-dashboard",
        "*/5 * * * *",
        "SELECT keen.refresh_dashboard_metrics()",
        "refresh dashboard_metrics concurrently",
    ),
    Job(
        "sweep-holds",
        "* * * * *",
        "SELECT keen.sweep_expired_holds()",
        "release credit holds past their expiry",
    ),
    Job(
        "reap-connections",
        "* * * * *",
        "SELECT keen.reap_stale_connections(p_idle => interval '2 minutes')",
        "mark WebSocket connections silent for 2 minutes stale",
    ),
    Job(
        "end-idle-transactions",
        "* * * * *",
        "SELECT keen.end_idle_transactions(p_idle => interval '5 minutes')",
        "end service transactions left idle for 5 minutes (docs/security.md)",
    ),
    Job(
        "prune-events",
        "17 3 * * *",
        "SELECT keen.prune_session_events(p_older_than => interval '30 days')",
        "delete session events older than 30 days",
    ),
)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A scheduled keen job and what `cron.job_run_details` says of its runs."""

    task: str
    jobid: int
    schedule: str
    active: bool
    last_start: datetime | None
    last_end: datetime | None
    last_status: str | None
    last_message: str | None
    runs_24h: int
    failures_24h: int

    @property
    def failed(self) -> bool:
        """True when the job's last finished run failed."""
        return self.last_status == "failed"


def job_name(database: str, task: str) -> str:
    """Return the pg_cron job name of `task` for the keen database `database`."""
    return f"keen:{database}:{task}"


def cron_database(conn: psycopg.Connection[Any]) -> str | None:
    """The database where pg_cron keeps its jobs, or None when pg_cron is not running.

    Read from the database pg_cron's launcher is connected to, else from
    `cron.database_name`; a login that may see neither (not a superuser, nor a member of
    pg_read_all_stats or pg_read_all_settings) gets the InsufficientPrivilege error, which
    says that pg_cron is loaded but hidden from this login.
    """
    row = conn.execute(
        "SELECT datname FROM pg_catalog.pg_stat_activity WHERE backend_type = 'pg_cron launcher'"
    ).fetchone()
    if row is not None:
        return str(row[0])
    row = conn.execute("SELECT pg_catalog.current_setting('cron.database_name', true)").fetchone()
    return str(row[0]) if row and row[0] else None


def cron_url(database_url: str) -> tuple[str, str]:
    """Return the keen database's name and the URL of pg_cron's database on its server."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_catalog.current_database()").fetchone()
        assert row is not None
        cron_db = cron_database(conn)
    if cron_db is None:
        raise ScheduleError(
            "pg_cron is not loaded on this server (shared_preload_libraries);"
            " install postgresql-15-cron and preload it, or run the jobs from cron"
            " (docs/operations.md)"
        )
    return str(row[0]), make_conninfo(database_url, dbname=cron_db)


def _installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'").fetchone()
    return row is not None


def schedule(
    database_url: str, schedules: Mapping[str, str] | None = None
) -> list[tuple[str, int, str]]:
    """Schedule the keen jobs of the database at `database_url` in pg_cron; idempotent.

    Creates the extension in pg_cron's database when it is missing (a superuser may);
    replaces the database's keen jobs (same names), removing any no longer in `JOBS`.

    Args:
        database_url: the keen database, as the operator login the jobs will run as.
        schedules: cron schedules replacing the defaults, by task name.

    Returns:
        (job name, job id, schedule) of each job.
    """
    overrides = dict(schedules or {})
    unknown = sorted(set(overrides) - {j.task for j in JOBS})
    if unknown:
        raise ValueError(f"unknown task(s): {', '.join(unknown)}")
    database, where = cron_url(database_url)
    names = [job_name(database, j.task) for j in JOBS]
    done = []
    with psycopg.connect(where, autocommit=True) as conn, conn.transaction():
        if not _installed(conn):
            try:
                conn.execute("CREATE EXTENSION pg_cron")
            except psycopg.errors.InsufficientPrivilege as exc:
                raise ScheduleError(
                    "pg_cron is preloaded but not installed; a superuser must run"
                    " CREATE EXTENSION pg_cron in its database"
                ) from exc
        conn.execute(
            "SELECT cron.unschedule(j.jobid) FROM cron.job AS j"
            " WHERE pg_catalog.starts_with(j.jobname, %s) AND j.jobname <> ALL(%s)",
            (job_name(database, ""), names),
        )
        for job, name in zip(JOBS, names, strict=True):
            when = overrides.get(job.task, job.schedule)
            row = conn.execute(
                "SELECT cron.schedule_in_database(%s, %s, %s, %s)",
                (name, when, job.command, database),
            ).fetchone()
            assert row is not None
            done.append((name, int(row[0]), when))
    return done


def unschedule(database_url: str) -> int:
    """Remove every pg_cron job of the keen database at `database_url`; return how many."""
    database, where = cron_url(database_url)
    with psycopg.connect(where, autocommit=True) as conn:
        if not _installed(conn):
            return 0
        rows = conn.execute(
            "SELECT cron.unschedule(j.jobid) FROM cron.job AS j"
            " WHERE pg_catalog.starts_with(j.jobname, %s)",
            (job_name(database, ""),),
        ).fetchall()
    return len(rows)


_STATUS: LiteralString = """
SELECT j.jobname, j.jobid, j.schedule, j.active,
       last.start_time, last.end_time, last.status, left(last.return_message, 200),
       (SELECT pg_catalog.count(*) FROM cron.job_run_details AS d
         WHERE d.jobid = j.jobid AND d.start_time > pg_catalog.now() - interval '24 hours'),
       (SELECT pg_catalog.count(*) FROM cron.job_run_details AS d
         WHERE d.jobid = j.jobid AND d.start_time > pg_catalog.now() - interval '24 hours'
           AND d.status = 'failed')
FROM cron.job AS j
LEFT JOIN LATERAL (
  SELECT d.start_time, d.end_time, d.status, d.return_message
  FROM cron.job_run_details AS d
  WHERE d.jobid = j.jobid AND d.status IN ('succeeded', 'failed')
  ORDER BY d.runid DESC LIMIT 1
) AS last ON true
WHERE pg_catalog.starts_with(j.jobname, %s) AND j.database = %s
ORDER BY j.jobname
"""


def job_status(database_url: str) -> list[JobStatus] | None:
    """The keen jobs of the database at `database_url` and their last finished runs.

    Returns None when pg_cron is not loaded or not installed on the server.
    """
    try:
        database, where = cron_url(database_url)
    except ScheduleError:
        return None
    prefix = job_name(database, "")
    with psycopg.connect(where, autocommit=True) as conn:
        if not _installed(conn):
            return None
        rows = conn.execute(_STATUS, (prefix, database)).fetchall()
    return [
        JobStatus(
            task=r[0][len(prefix) :],
            jobid=r[1],
            schedule=r[2],
            active=r[3],
            last_start=r[4],
            last_end=r[5],
            last_status=r[6],
            last_message=r[7],
            runs_24h=r[8],
            failures_24h=r[9],
        )
        for r in rows
    ]
