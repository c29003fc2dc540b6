"""The `keen-sql` command line: migrations, status, operations and the demonstration."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
from keen_queries import analytics, credits, sessions

from keen_sql import backup, demo, health, migrations, schedule
from keen_sql.config import database_url

Command = Callable[[argparse.Namespace], int]


def _migrate(args: argparse.Namespace) -> int:
    applied = migrations.apply(args.database_url)
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m}" for m in applied))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    undone = migrations.rollback(args.database_url, None if args.all else args.count)
    print(f"rolled back {len(undone)} migration(s)" + "".join(f"\n  {m}" for m in undone))
    return 0


def _status(args: argparse.Namespace) -> int:
    for state in migrations.status(args.database_url):
        print(f"{'applied' if state.applied else 'pending'}  {state.id}")
    return 0


def _backup(args: argparse.Namespace) -> int:
    try:
        done = backup.backup(args.database_url, args.output_dir)
    except (backup.BackupError, psycopg.Error) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 2
    facts = done.manifest.facts
    print(f"dump:     {done.dump_path} ({done.manifest.dump_bytes} bytes)")
    print(f"manifest: {done.manifest_path}")
    rows = sum(facts.row_counts.values())
    print(f"  {len(facts.migrations)} migrations, {rows} rows in {len(facts.row_counts)} tables")
    print(f"  ledger: {facts.ledger_rows} rows, md5 {facts.ledger_checksum}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    try:
        report = backup.restore(args.database_url, args.dump, args.target_db)
    except backup.VerificationFailed as exc:
        print(f"restored into {exc.report.database} but verification FAILED:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in exc.report.problems), file=sys.stderr)
        return 1
    except (backup.BackupError, psycopg.Error) as exc:
        print(f"restore refused or failed: {exc}", file=sys.stderr)
        return 2
    print(f"restored into {report.database}; verified:")
    print(
        "\n".join([f"  ok    {c}" for c in report.checks] + [f"  note  {n}" for n in report.notes])
    )
    return 0


def _health(args: argparse.Namespace) -> int:
    limits = health.Thresholds(long_transaction_s=args.long_transaction_s)
    report = health.check_health(args.database_url, replica_url=args.replica_url, thresholds=limits)
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.render())
    return 0 if report.ok else 1


def _schedule(args: argparse.Namespace) -> int:
    # The four periodic jobs in pg_cron (keen_sql/schedule.py); idempotent.
    try:
        if args.remove:
            print(f"{schedule.unschedule(args.database_url)} pg_cron job(s) removed")
            return 0
        overrides = {}
        for item in args.at:
            task, equals, when = item.partition("=")
            if not equals or not when.strip():
                raise ValueError(f"--at wants TASK=CRON, got {item!r}")
            overrides[task] = when
        jobs = schedule.schedule(args.database_url, overrides)
    except ValueError as exc:
        print(
            f"schedule: {exc} (tasks: {', '.join(j.task for j in schedule.JOBS)})", file=sys.stderr
        )
        return 2
    except (schedule.ScheduleError, psycopg.Error) as exc:
        print(f"schedule failed: {exc}".strip(), file=sys.stderr)
        return 3
    for name, jobid, when in jobs:
        print(f"scheduled  {name:<40} {when:<14} (job {jobid})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    return demo.run(args.database_url)


def _analytics_refresh(args: argparse.Namespace) -> int:
    # An operator utility: the dashboard refresh, run by cron / pg_cron every 5 minutes.
    started = time.monotonic()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        analytics.refresh_dashboard_metrics(conn)
    print(f"dashboard_metrics refreshed in {time.monotonic() - started:.2f} s")
    return 0


def _analytics_verify(args: argparse.Namespace) -> int:
    # An operator utility: every usage figure that differs from its recomputation.
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        rows = analytics.verify_usage_stats(conn)
    for r in rows:
        print(
            f"{r.user_id} {r.date_bucket} {r.figure}: recorded {r.recorded}, expected {r.expected}"
        )
    print(f"{len(rows)} difference(s) in daily_usage_stats")
    return 1 if rows else 0


def _credits_verify(args: argparse.Namespace) -> int:
    # An operator utility: every violated ledger invariant (empty on a healthy database).
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        rows = credits.verify_ledger(conn)
    for row in rows:
        print(f"{row.user_id} {row.account_id} {row.invariant}: {row.detail}")
    print(f"{len(rows)} violated ledger invariant(s)")
    return 1 if rows else 0


def _credits_sweep(args: argparse.Namespace) -> int:
    # An operator utility: expire lapsed holds (schedule every minute).
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        row = credits.sweep_expired_holds(conn)
    print(f"{row.expired if row else 0} expired hold(s) released")
    return 0


def _sessions_reap(args: argparse.Namespace) -> int:
    # The WebSocket server's housekeeping: connections silent for too long become stale.
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        row = sessions.reap_stale_connections(conn, p_idle=datetime.timedelta(seconds=args.idle_s))
    print(f"{row.reaped if row else 0} stale connection(s) reaped")
    return 0


def _sessions_prune(args: argparse.Namespace) -> int:
    # An operator utility: the event log's retention (schedule daily).
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        row = sessions.prune_session_events(
            conn, p_older_than=datetime.timedelta(days=args.older_than_days)
        )
    print(f"{row.pruned if row else 0} session event(s) pruned")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every `keen-sql` subcommand."""
    parser = argparse.ArgumentParser(prog="keen-sql", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=None,
        help="libpq URL of the database (default: KEEN_DATABASE_URL, else the embedded cluster)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=_migrate)
    rb = sub.add_parser("rollback", help="roll back applied migrations")
    rb.add_argument("--count", type=int, default=1, help="how many (default 1)")
    rb.add_argument("--all", action="store_true", help="roll back every migration")
    rb.set_defaults(func=_rollback)
    sub.add_parser("status", help="list migrations").set_defaults(func=_status)
    sub.add_parser("demo", help="migrate, then show the migrations and the schema").set_defaults(
        func=_demo
    )
    bk = sub.add_parser("backup", help="pg_dump (custom format) with a manifest beside it")
    bk.add_argument("--output-dir", type=Path, default=Path("backups"), help="default backups/")
    bk.set_defaults(func=_backup)
    rs = sub.add_parser("restore", help="restore a dump into a NEW database and verify it")
    rs.add_argument("dump", type=Path, help="the .dump file (its .manifest.json beside it)")
    rs.add_argument("--target-db", required=True, help="database to create on the server")
    rs.set_defaults(func=_restore)
    hc = sub.add_parser("health", help="server, migrations, connections, lag, long transactions")
    hc.add_argument(
        "--replica-url",
        default=os.environ.get("KEEN_REPLICA_URL"),
        help="a replica whose lag to measure (default: KEEN_REPLICA_URL)",
    )
    hc.add_argument("--long-transaction-s", type=float, default=60.0, help="default 60")
    hc.add_argument("--json", action="store_true", help="print the report as JSON")
    hc.set_defaults(func=_health)
    sc = sub.add_parser("schedule", help="schedule the periodic jobs in pg_cron (idempotent)")
    sc.add_argument(
        "--at",
        action="append",
        default=[],
        metavar="TASK=CRON",
        help="another cron schedule for a task, e.g. prune-events='0 4 * * *' (repeatable)",
    )
    sc.add_argument("--remove", action="store_true", help="unschedule this database's jobs")
    sc.set_defaults(func=_schedule)
    an = sub.add_parser("analytics", help="dashboard refresh and usage-stats check (operators)")
    an_sub = an.add_subparsers(dest="analytics_command", required=True)
    an_sub.add_parser(
        "refresh", help="refresh dashboard_metrics concurrently (schedule every 5 minutes)"
    ).set_defaults(func=_analytics_refresh)
    an_sub.add_parser(
        "verify", help="list usage figures that differ from sessions and the ledger (exit 1 if any)"
    ).set_defaults(func=_analytics_verify)
    cr = sub.add_parser("credits", help="ledger verification and hold sweeping (operators)")
    cr_sub = cr.add_subparsers(dest="credits_command", required=True)
    cr_sub.add_parser(
        "verify", help="list violated ledger invariants (exit 1 if any)"
    ).set_defaults(func=_credits_verify)
    cr_sub.add_parser(
        "sweep-holds", help="release holds past their expiry (schedule every minute)"
    ).set_defaults(func=_credits_sweep)
    se = sub.add_parser("sessions", help="connection reaping and event retention (operators)")
    se_sub = se.add_subparsers(dest="sessions_command", required=True)
    rp = se_sub.add_parser("reap-connections", help="mark connections silent too long as stale")
    rp.add_argument("--idle-s", type=float, default=120.0, help="silence allowed, s (default 120)")
    rp.set_defaults(func=_sessions_reap)
    pr = se_sub.add_parser("prune-events", help="delete session events older than the retention")
    pr.add_argument("--older-than-days", type=float, default=30.0, help="retention (default 30)")
    pr.set_defaults(func=_sessions_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    args.database_url = args.database_url or database_url()
    func: Command = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
