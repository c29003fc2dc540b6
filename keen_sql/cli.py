"""The `keen-sql` command line: migrations, status, operations and the demonstration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from keen_sql import migrations
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    args.database_url = args.database_url or database_url()
    func: Command = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
