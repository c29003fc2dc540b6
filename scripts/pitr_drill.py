"""Point-in-time recovery drill with pgBackRest, end to end (`make pitr-drill`).

Usage: .venv/bin/python scripts/pitr_drill.py [--report build/pitr_drill.json]
Runs tools/keen_dev/keen_dev/pitr.py's drill on a throwaway cluster; prints its figures as JSON
(also written to the report file); exits 1 when a step fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keen_dev import pitr


def main() -> int:
    """Run the drill; print its figures; exit 1 when a step fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, default=pitr.REPORT, help=f"default {pitr.REPORT}")
    args = parser.parse_args()
    try:
        figures = pitr.run(args.report)
    except pitr.DrillFailed as exc:
        print(f"pitr drill FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
