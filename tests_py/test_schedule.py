"""pg_cron runs the periodic jobs (keen-sql schedule) and keen-sql health reports them.

The embedded cluster preloads pg_cron (scripts/db.sh). The test schedules the jobs of its own
database every minute, prepares one thing for each job to do (an expired hold, a silent
WebSocket connection, old session events, sessions the dashboard has not counted yet), waits
for pg_cron's next minute and checks every effect, then that health reports the runs — and a
failed run as a failure.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from keen_dev.ledger import credit, new_user
from keen_queries import sessions as q
from psycopg import sql

from keen_sql import cli, schedule
from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.health import check_health

EVERY_MINUTE = [f"--at={job.task}=* * * * *" for job in schedule.JOBS]


@pytest.fixture
def url(fresh_db_url: str) -> Iterator[str]:
    """This test's database; its pg_cron jobs are removed afterwards, whatever happens."""
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        if schedule.cron_database(conn) is None:
            pytest.fail("pg_cron is not preloaded on the test server (make setup; db.sh up)")
    try:
        yield fresh_db_url
    finally:
        schedule.unschedule(fresh_db_url)


def _prepare(db: Database, url: str) -> dict[str, Any]:
    """One piece of work per job; return what to look at afterwards."""
    user = new_user(url)
    with db.tenant(user) as t:
        credit(t, Decimal("10"))
        hold = t.credits.hold_credits(
            session_id=None,
            amount=Decimal("4"),
            idempotency_key=None,
            expires_in=datetime.timedelta(seconds=1),
        )
        t.call(
            q.start_session,
            session_id="cron-watched",
            vision="v",
            working_directory="/w",
            git_branch="main",
            parent_session_id=None,
        )
        t.call(
            q.open_connection,
            connection_id="ws-silent",
            client_ip=ipaddress.ip_address("10.0.0.1"),
            user_agent=None,
            client_type=None,
            session_id="cron-watched",
            subscribed_events=None,
            session_filters=None,
        )
    assert hold is not None
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE keen.websocket_connections SET last_ping_at = now() - interval '1 hour'"
            " WHERE user_id = %s",
            (user,),
        )
        events = conn.execute(
            "SELECT count(*) FROM keen.session_events WHERE user_id = %s", (user,)
        ).fetchone()
        assert events is not None and events[0] >= 1
        # Age the session's first event beyond the 30-day retention (superuser, triggers off).
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                "UPDATE keen.session_events SET created_at = now() - interval '40 days'"
                " WHERE user_id = %s AND id = (SELECT min(id) FROM keen.session_events"
                "                               WHERE user_id = %s)",
                (user, user),
            )
        refreshed = conn.execute("SELECT max(refreshed_at) FROM keen.dashboard_metrics").fetchone()
    assert refreshed is not None
    return {"user": user, "hold": hold.id, "events": events[0], "refreshed": refreshed[0]}


def _wait_for_runs(
    url: str, tasks: set[str], since: datetime.datetime, timeout: float = 90.0
) -> list[schedule.JobStatus]:
    """Poll until every task has a finished run started after `since` (pg_cron starts them
    on the minute: a run that began before the work was ready, e.g. before the hold lapsed,
    does not count)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = schedule.job_status(url) or []
        done = {
            j.task
            for j in jobs
            if j.last_end is not None and j.last_start is not None and j.last_start > since
        }
        if tasks <= done:
            return jobs
        assert time.monotonic() < deadline, f"pg_cron did not run {tasks}: {jobs}"
        time.sleep(0.5)


@pytest.mark.slow
def test_pg_cron_runs_the_jobs_and_health_reports_their_runs_and_failures(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Scheduled by the CLI, twice: the second run replaces the jobs, it adds none.
    assert cli.main(["--database-url", url, "schedule", *EVERY_MINUTE]) == 0
    first = {j.task: j.jobid for j in schedule.job_status(url) or []}
    assert cli.main(["--database-url", url, "schedule", *EVERY_MINUTE]) == 0
    jobs = schedule.job_status(url) or []
    assert {j.task: j.jobid for j in jobs} == first
    assert sorted(first) == sorted(j.task for j in schedule.JOBS)
    assert {j.schedule for j in jobs} == {"* * * * *"}
    assert "scheduled  keen:" in capsys.readouterr().out

    # A job of this database that fails: health must say so until `schedule` removes it.
    database, cron_url = schedule.cron_url(url)
    with psycopg.connect(cron_url, autocommit=True) as conn:
        conn.execute(
            "SELECT cron.schedule_in_database(%s, '* * * * *', 'SELECT keen.no_such_job()', %s)",
            (schedule.job_name(database, "broken"), database),
        )

    with Database(Settings(database_url=url, pool_max_size=2)) as db:
        before = _prepare(db, url)
    with psycopg.connect(url, autocommit=True) as conn:
        lapsed = conn.execute(
            "SELECT expires_at FROM keen.credit_holds WHERE id = %s", (before["hold"],)
        ).fetchone()
    assert lapsed is not None
    jobs = _wait_for_runs(url, {*first, "broken"}, since=lapsed[0])

    with psycopg.connect(url, autocommit=True) as conn:
        hold = conn.execute(
            "SELECT status FROM keen.credit_holds WHERE id = %s", (before["hold"],)
        ).fetchone()
        assert hold == ("expired",), "sweep-holds released the expired hold"
        ws = conn.execute(
            "SELECT connection_status FROM keen.websocket_connections WHERE user_id = %s",
            (before["user"],),
        ).fetchone()
        assert ws == ("stale",), "reap-connections marked the silent connection stale"
        events = conn.execute(
            "SELECT count(*) FROM keen.session_events WHERE user_id = %s", (before["user"],)
        ).fetchone()
        assert events == (before["events"] - 1,), "prune-events deleted only the aged event"
        dash = conn.execute(
            "SELECT max(refreshed_at), sum(sessions_started) FROM keen.dashboard_metrics"
        ).fetchone()
        assert dash is not None and dash[0] > before["refreshed"], "refresh-dashboard ran"
        assert dash[1] >= 1, "the refreshed dashboard counts the session started before it"

    report = check_health(url).by_name("scheduled_jobs")
    assert report.status == "fail", report
    assert "broken" in report.summary and "no_such_job" in report.summary
    assert cli.main(["--database-url", url, "health"]) == 1
    capsys.readouterr()

    assert cli.main(["--database-url", url, "schedule", *EVERY_MINUTE]) == 0
    jobs = schedule.job_status(url) or []
    assert sorted(j.task for j in jobs) == sorted(first), "schedule removed the unknown job"
    report = check_health(url).by_name("scheduled_jobs")
    assert report.status == "ok", report
    assert all(j.last_status == "succeeded" for j in jobs), jobs


def test_schedule_refuses_an_unknown_task_and_a_bad_option_with_exit_2(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--database-url", url, "schedule", "--at", "nightly=0 1 * * *"]) == 2
    assert "unknown task(s): nightly" in capsys.readouterr().err
    assert cli.main(["--database-url", url, "schedule", "--at", "prune-events"]) == 2
    assert schedule.job_status(url) in (None, []), "nothing scheduled by a refused call"


def test_unschedule_removes_only_this_databases_jobs(url: str) -> None:
    schedule.schedule(url)
    other = f"keen_test_other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(schedule.cron_url(url)[1], autocommit=True) as conn:
        conn.execute(
            "SELECT cron.schedule_in_database(%s, '17 3 * * *', 'SELECT 1', %s)",
            (schedule.job_name(other, "prune-events"), "postgres"),
        )
        try:
            assert schedule.unschedule(url) == len(schedule.JOBS)
            left = conn.execute(
                "SELECT count(*) FROM cron.job WHERE jobname = %s",
                (schedule.job_name(other, "prune-events"),),
            ).fetchone()
            assert left == (1,)
        finally:
            conn.execute("SELECT cron.unschedule(%s)", (schedule.job_name(other, "prune-events"),))
    assert schedule.job_status(url) == []


def test_health_warns_of_a_recovered_failure_an_inactive_job_and_a_missing_task(
    url: str,
) -> None:
    schedule.schedule(url)
    database, where = schedule.cron_url(url)
    names = {j.task: schedule.job_name(database, j.task) for j in schedule.JOBS}
    with psycopg.connect(where, autocommit=True) as conn:
        # pg_cron's own record of two runs of sweep-holds: failed an hour ago, then succeeded.
        conn.execute(
            "INSERT INTO cron.job_run_details (jobid, runid, database, username, command, status,"
            " return_message, start_time, end_time)"
            " SELECT j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, s,"
            "        m, now() - t, now() - t + interval '1 second'"
            " FROM cron.job AS j,"
            "      (VALUES ('failed', 'ERROR: canceling statement due to lock timeout',"
            "               interval '1 hour'),"
            "              ('succeeded', '1 row', interval '30 minutes')) AS r(s, m, t)"
            " WHERE j.jobname = %s ORDER BY t DESC",
            (names["sweep-holds"],),
        )
    check = check_health(url).by_name("scheduled_jobs")
    assert check.status == "warn", check
    assert "sweep-holds failed 1x in 24 h" in check.summary
    assert "2 run(s) and 1 failure(s) in 24 h" in check.summary

    with psycopg.connect(where, autocommit=True) as conn:
        conn.execute(
            "SELECT cron.alter_job(jobid, active => false) FROM cron.job WHERE jobname = %s",
            (names["reap-connections"],),
        )
        conn.execute("SELECT cron.unschedule(%s::text)", (names["prune-events"],))
    check = check_health(url).by_name("scheduled_jobs")
    assert check.status == "warn", check
    assert "reap-connections inactive" in check.summary
    assert "prune-events not scheduled (keen-sql schedule)" in check.summary
    assert check.data["missing"] == ["prune-events"]


def test_health_as_a_login_without_access_to_pg_cron_warns_instead_of_failing(url: str) -> None:
    schedule.schedule(url)
    name = f"keen_test_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        probe = url.replace("postgresql://postgres@", f"postgresql://{name}@", 1)
        check = check_health(probe).by_name("scheduled_jobs")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    assert check.status == "warn", check
    assert "may not read pg_cron's jobs (must be superuser or have privileges" in check.summary


def test_an_operator_login_with_the_documented_grants_schedules_its_own_jobs(url: str) -> None:
    name = f"keen_test_ops_{uuid.uuid4().hex[:8]}"
    database, where = schedule.cron_url(url)
    role = sql.Identifier(name)
    grants = [
        sql.SQL("CREATE ROLE {} LOGIN IN ROLE keen_owner, pg_read_all_settings").format(role),
        sql.SQL("GRANT USAGE ON SCHEMA cron TO {}").format(role),
        sql.SQL(
            "GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text, text, text, text, text,"
            " boolean) TO {}"
        ).format(role),
    ]
    with psycopg.connect(where, autocommit=True) as conn:
        for stmt in grants:
            conn.execute(stmt)
    login = url.replace("postgresql://postgres@", f"postgresql://{name}@", 1)
    try:
        jobs = schedule.schedule(login)
        assert len(jobs) == len(schedule.JOBS)
        with psycopg.connect(where, autocommit=True) as conn:
            owners = conn.execute(
                "SELECT DISTINCT username FROM cron.job WHERE starts_with(jobname, %s)",
                (schedule.job_name(database, ""),),
            ).fetchall()
        assert owners == [(name,)], "the jobs run as the login that scheduled them"
        assert len(schedule.job_status(login) or []) == len(schedule.JOBS)
        assert schedule.unschedule(login) == len(schedule.JOBS)
    finally:
        with psycopg.connect(where, autocommit=True) as conn:
            conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE username = %s", (name,))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            conn.execute(sql.SQL("DROP ROLE {}").format(role))
