"""`python -m examples.demo [--database-url URL]`: the demonstration of `make run`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from examples.demo import demo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demonstration on the given database; return the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("KEEN_DATABASE_URL", ""),
        help="libpq URL or conninfo (default: KEEN_DATABASE_URL, else libpq's PG* variables)",
    )
    return demo.run(parser.parse_args(argv).database_url)


if __name__ == "__main__":
    sys.exit(main())
