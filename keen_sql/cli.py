"""The `keen-sql` command line: migrations, status and operations.

Exit status: 0 success; 1 a finding (a violated invariant, a failed check); 2 a usage error;
3 a failure to connect or to run. Errors print as one line with advice on stderr; ``--debug``
adds the traceback. Connection: ``--database-url`` (a libpq URL or key=value conninfo), else
``KEEN_DATABASE_URL``, else libpq's own environment (``PGHOST``, ``PGDATABASE``, …). The
common options are accepted before or after the subcommand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata, resources
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import psycopg_pool
from keen_queries import analytics, credits, sessions
from psycopg import sql

from keen_sql import backup, health, migrations, schedule
from keen_sql.config import database_url

Command = Callable[[argparse.Namespace], int]

OK, FINDING, USAGE, FAILURE = 0, 1, 2, 3
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _migrate(args: argparse.Namespace) -> int:
    applied = migrations.apply(args.database_url)
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m}" for m in applied))
    return OK


def _rollback(args: argparse.Namespace) -> int:
    undone = migrations.rollback(args.database_url, None if args.all else args.count)
    print(f"rolled back {len(undone)} migration(s)" + "".join(f"\n  {m}" for m in undone))
    return OK


def _status(args: argparse.Namespace) -> int:
    for state in migrations.status(args.database_url):
        print(f"{'applied' if state.applied else 'pending'}  {state.id}")
    return OK


def _backup(args: argparse.Namespace) -> int:
    try:
        done = backup.backup(args.database_url, args.output_dir)
    except (backup.BackupError, psycopg.Error) as exc:
        raise CommandFailed(f"backup failed: {_first_line(exc)}") from exc
    facts = done.manifest.facts
    print(f"dump:     {done.dump_path} ({done.manifest.dump_bytes} bytes)")
    print(f"manifest: {done.manifest_path}")
    rows = sum(facts.row_counts.values())
    print(f"  {len(facts.migrations)} migrations, {rows} rows in {len(facts.row_counts)} tables")
    print(f"  ledger: {facts.ledger_rows} rows, md5 {facts.ledger_checksum}")
    return OK


def _restore(args: argparse.Namespace) -> int:
    try:
        report = backup.restore(args.database_url, args.dump, args.target_db)
    except backup.VerificationFailed as exc:
        print(f"restored into {exc.report.database} but verification FAILED:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in exc.report.problems), file=sys.stderr)
        return FINDING
    except (backup.BackupError, psycopg.Error) as exc:
        raise CommandFailed(f"restore refused or failed: {_first_line(exc)}") from exc
    print(f"restored into {report.database}; verified:")
    print(
        "\n".join([f"  ok    {c}" for c in report.checks] + [f"  note  {n}" for n in report.notes])
    )
    return OK


def _health(args: argparse.Namespace) -> int:
    limits = health.Thresholds(long_transaction_s=args.long_transaction_s)
    report = health.check_health(args.database_url, replica_url=args.replica_url, thresholds=limits)
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.render())
    if report.by_name("server").status == "fail":
        raise CommandFailed(f"cannot connect to the database: {report.by_name('server').summary}")
    return OK if report.ok else FINDING


def _schedule(args: argparse.Namespace) -> int:
    # The periodic jobs in pg_cron (keen_sql/schedule.py); idempotent.
    try:
        if args.remove:
            print(f"{schedule.unschedule(args.database_url)} pg_cron job(s) removed")
            return OK
        overrides = {}
        for item in args.at:
            task, equals, when = item.partition("=")
            if not equals or not when.strip():
                raise ValueError(f"--at wants TASK=CRON, got {item!r}")
            overrides[task] = when
        jobs = schedule.schedule(args.database_url, overrides)
    except ValueError as exc:
        tasks = ", ".join(j.task for j in schedule.JOBS)
        print(f"keen-sql schedule: error: {exc} (tasks: {tasks})", file=sys.stderr)
        return USAGE
    except (schedule.ScheduleError, psycopg.Error) as exc:
        raise CommandFailed(f"schedule failed: {_first_line(exc)}") from exc
    for name, jobid, when in jobs:
        print(f"scheduled  {name:<40} {when:<14} (job {jobid})")
    return OK


def _citus_distribute(args: argparse.Namespace) -> int:
    # docs/scaling.md: after `migrate`, on a Citus coordinator (superuser), in one transaction.
    folder = resources.files("keen_sql").joinpath("sql", "citus")
    settings = [
        line.encode()
        for line in folder.joinpath("settings.sql").read_text().splitlines()
        if line.strip() and not line.startswith("--")
    ]
    script = folder.joinpath("distribute.sql").read_text()
    try:
        with psycopg.connect(args.database_url) as conn:
            (citus,) = conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'citus'"
            ).fetchone() or (0,)
            if not citus:
                raise CommandFailed(
                    "citus distribute: the citus extension is not installed in this database"
                    " (docs/scaling.md: CREATE EXTENSION citus on every node first)"
                )
            for setting in settings:
                conn.execute(setting)
            conn.execute(script.encode())
            # The tenant context reaches the workers: SET LOCAL (keen_sql.context) is
            # replayed on every worker connection of a transaction in this database.
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET citus.propagate_set_commands = 'local'").format(
                    sql.Identifier(conn.info.dbname)
                )
            )
            rows = conn.execute(
                "SELECT logicalrelid::text, partmethod::text,"
                " coalesce(column_to_column_name(logicalrelid, partkey), ''), colocationid"
                " FROM pg_dist_partition WHERE logicalrelid::text LIKE 'keen.%' ORDER BY 1"
            ).fetchall()
    except psycopg.Error as exc:
        raise CommandFailed(f"citus distribute failed: {_first_line(exc)}") from exc
    kinds = {"h": "distributed by", "n": "reference table"}
    for table, method, column, group in rows:
        print(f"{table:<32} {kinds.get(method, method)} {column} (co-location {group})")
    return OK


def _analytics_refresh(args: argparse.Namespace) -> int:
    # An operator utility: the dashboard refresh, run by cron / pg_cron every 5 minutes.
    started = time.monotonic()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        analytics.refresh_dashboard_metrics(conn)
    print(f"dashboard_metrics refreshed in {time.monotonic() - started:.2f} s")
    return OK


def _analytics_verify(args: argparse.Namespace) -> int:
    # An operator utility: every usage figure that differs from its recomputation.
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        rows = analytics.verify_usage_stats(conn)
    for r in rows:
        print(
            f"{r.user_id} {r.date_bucket} {r.figure}: recorded {r.recorded}, expected {r.expected}"
        )
    print(f"{len(rows)} difference(s) in daily_usage_stats")
    return FINDING if rows else OK


def _credits_verify(args: argparse.Namespace) -> int:
    # An operator utility: every violated ledger invariant (empty on a healthy database).
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        rows = credits.verify_ledger(conn)
    for row in rows:
        print(f"{row.user_id} {row.account_id} {row.invariant}: {row.detail}")
    print(f"{len(rows)} violated ledger invariant(s)")
    return FINDING if rows else OK


def _credits_sweep(args: argparse.Namespace) -> int:
    # An operator utility: expire lapsed holds (schedule every minute).
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        expired = credits.sweep_expired_holds(conn)
    print(f"{expired} expired hold(s) released")
    return OK


def _sessions_end_idle(args: argparse.Namespace) -> int:
    # Operators: service transactions left idle (an injected statement may lift its own
    # timeout) are ended from outside (docs/security.md).
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        ended = sessions.end_idle_transactions(conn, idle=datetime.timedelta(seconds=args.idle_s))
    print(f"{ended} idle service transaction(s) ended")
    return OK


def _sessions_reap(args: argparse.Namespace) -> int:
    # The WebSocket server's housekeeping: connections silent for too long become stale.
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        reaped = sessions.reap_stale_connections(conn, idle=datetime.timedelta(seconds=args.idle_s))
    print(f"{reaped} stale connection(s) reaped")
    return OK


def _sessions_prune(args: argparse.Namespace) -> int:
    # An operator utility: the event log's retention (schedule daily).
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        pruned = sessions.prune_session_events(
            conn, older_than=datetime.timedelta(days=args.older_than_days)
        )
    print(f"{pruned} session event(s) pruned")
    return OK


class CommandFailed(Exception):
    """A command could not do its work; the message is the one line to print (exit 3)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _version() -> str:
    try:
        return metadata.version("keen-sql")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _common_options(defaults: bool) -> _Parser:
    """The options every (sub)command takes; only the top level carries their defaults, so a
    value given before the subcommand is not reset by the subcommand's parser."""
    common = _Parser(add_help=False)

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    common.add_argument(
        "--database-url",
        default=default(None),
        metavar="CONNINFO",
        help="libpq URL or key=value conninfo (default: KEEN_DATABASE_URL, else libpq's "
        "PGHOST, PGDATABASE, … environment)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="log more: -v info (yoyo's migrations, the pool), -vv debug",
    )
    common.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default(None),
        help="log level of keen_sql, yoyo and psycopg (overrides -v; default WARNING)",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show the traceback of an error (and log at DEBUG)",
    )
    return common


class _Parser(argparse.ArgumentParser):
    """argparse with keen-sql's usage errors: one line and a hint, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every `keen-sql` subcommand."""
    common = _common_options(defaults=False)
    parser = _Parser(
        prog="keen-sql",
        description=__doc__,
        parents=[_common_options(True)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"keen-sql {_version()}")
    top = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    class _Sub:
        """add_parser with the common options on every subcommand."""

        def __init__(self, action: argparse._SubParsersAction[_Parser]) -> None:
            self.action = action

        def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
            return self.action.add_parser(name, parents=[common], **kwargs)

        def add_subparsers(self, parser: argparse.ArgumentParser, dest: str) -> _Sub:
            return _Sub(parser.add_subparsers(dest=dest, required=True, parser_class=_Parser))

    sub = _Sub(top)
    sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=_migrate)
    rb = sub.add_parser("rollback", help="roll back applied migrations")
    rb.add_argument("--count", type=int, default=1, help="how many (default 1)")
    rb.add_argument("--all", action="store_true", help="roll back every migration")
    rb.set_defaults(func=_rollback)
    sub.add_parser("status", help="list migrations").set_defaults(func=_status)
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
    an_sub = sub.add_subparsers(an, "analytics_command")
    an_sub.add_parser(
        "refresh", help="refresh dashboard_metrics concurrently (schedule every 5 minutes)"
    ).set_defaults(func=_analytics_refresh)
    an_sub.add_parser(
        "verify", help="list usage figures that differ from sessions and the ledger (exit 1 if any)"
    ).set_defaults(func=_analytics_verify)
    cr = sub.add_parser("credits", help="ledger verification and hold sweeping (operators)")
    cr_sub = sub.add_subparsers(cr, "credits_command")
    cr_sub.add_parser(
        "verify", help="list violated ledger invariants (exit 1 if any)"
    ).set_defaults(func=_credits_verify)
    cr_sub.add_parser(
        "sweep-holds", help="release holds past their expiry (schedule every minute)"
    ).set_defaults(func=_credits_sweep)
    se = sub.add_parser(
        "sessions", help="connection reaping, idle transactions and event retention (operators)"
    )
    se_sub = sub.add_subparsers(se, "sessions_command")
    rp = se_sub.add_parser("reap-connections", help="mark connections silent too long as stale")
    rp.add_argument("--idle-s", type=float, default=120.0, help="silence allowed, s (default 120)")
    rp.set_defaults(func=_sessions_reap)
    ei = se_sub.add_parser("end-idle", help="end service transactions idle for too long")
    ei.add_argument(
        "--idle-s", type=float, default=300.0, help="idle time allowed, s (default 300)"
    )
    ei.set_defaults(func=_sessions_end_idle)
    pr = se_sub.add_parser("prune-events", help="delete session events older than the retention")
    pr.add_argument("--older-than-days", type=float, default=30.0, help="retention (default 30)")
    pr.set_defaults(func=_sessions_prune)
    ci = sub.add_parser("citus", help="run keen-sql on a Citus cluster (docs/scaling.md)")
    ci_sub = sub.add_subparsers(ci, "citus_command")
    ci_sub.add_parser(
        "distribute",
        help="distribute the migrated tables by tenant on the coordinator (idempotent)",
    ).set_defaults(func=_citus_distribute)
    return parser


@contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """Make keen_sql's, yoyo's and psycopg_pool's own logging visible at the level asked,
    on stderr, for the command's duration."""
    if args.log_level:
        level = getattr(logging, args.log_level)
    elif args.debug or args.verbose >= 2:
        level = logging.DEBUG
    elif args.verbose == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def _advice(exc: BaseException) -> str:
    """One line: what went wrong, and what to do."""
    if isinstance(exc, CommandFailed | migrations.MigrationError):
        return str(exc)
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout) and not getattr(
        exc, "sqlstate", None
    ):
        return (
            f"cannot connect to the database: {_first_line(exc)} -- check --database-url, "
            "KEEN_DATABASE_URL or the PG* variables, and that the server runs"
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return (
            f"permission denied: {_first_line(exc)} -- run operator commands as the owner "
            "of the database or a superuser"
        )
    if isinstance(exc, psycopg.Error):
        code = f" ({exc.sqlstate})" if exc.sqlstate else ""
        return f"database error{code}: {_first_line(exc)}"
    if isinstance(exc, OSError):
        return f"{_first_line(exc)}"
    return f"unexpected {type(exc).__name__}: {_first_line(exc)} -- run with --debug for details"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code (0, 1, 2 or 3; see the module)."""
    args = build_parser().parse_args(argv)
    if args.database_url is None:
        args.database_url = database_url()
    func: Command = args.func
    try:
        with _logging(args):
            return func(args)
    except KeyboardInterrupt:
        print("keen-sql: interrupted", file=sys.stderr)
        return FAILURE
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"keen-sql {args.command}: {_advice(exc)}", file=sys.stderr)
        return FAILURE


if __name__ == "__main__":
    sys.exit(main())
