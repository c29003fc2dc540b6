"""PL/pgSQL statement coverage through plpgsql_check's profiler.

`make coverage` turns the profiler on for the cluster and sets KEEN_PLPGSQL_COVERAGE to a
folder; every scratch database then records, just before it is dropped, how often each
statement of each keen function ran (`dump`). `report` merges the records of all databases:
a statement is covered when it ran in any of them.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import psycopg

STATEMENTS = """
SELECT p.oid::regprocedure::text, s.stmtid, s.lineno, s.stmtname, s.exec_stmts
FROM pg_proc AS p
JOIN pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_language AS l ON l.oid = p.prolang
CROSS JOIN LATERAL public.plpgsql_profiler_function_statements_tb(p.oid) AS s
WHERE n.nspname = 'keen' AND l.lanname = 'plpgsql'
"""


def dump(url: str, name: str) -> None:
    """Append the statement counts of database `url` to $KEEN_PLPGSQL_COVERAGE/<name>.jsonl."""
    folder = os.environ.get("KEEN_PLPGSQL_COVERAGE")
    if not folder:
        return
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error:
        return  # the test dropped its database itself (backup → drop → restore)
    with conn:
        has_keen = conn.execute("SELECT to_regnamespace('keen') IS NOT NULL").fetchone()
        if not has_keen or not has_keen[0]:
            return
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
        rows = conn.execute(STATEMENTS).fetchall()
    with (Path(folder) / f"{name}.jsonl").open("a", encoding="utf-8") as out:
        for signature, stmtid, lineno, stmtname, count in rows:
            record = {"fn": signature, "stmt": stmtid, "line": lineno, "kind": stmtname, "n": count}
            out.write(json.dumps(record) + "\n")


def report(folder: Path, fail_under: float) -> int:
    """Print per-function and total statement coverage; non-zero when under `fail_under`%."""
    runs: dict[tuple[str, int], int] = defaultdict(int)
    kinds: dict[tuple[str, int], tuple[int, str]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            key = (r["fn"], r["stmt"])
            runs[key] += r["n"] or 0
            kinds[key] = (r["line"], r["kind"])
    if not runs:
        print("plpgsql coverage: no profile recorded", file=sys.stderr)
        return 1
    per_fn: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed: dict[str, list[str]] = defaultdict(list)
    for (fn, stmt), count in runs.items():
        # The function body block itself is not a statement a test can miss.
        if kinds[(fn, stmt)][1] == "statement block" and stmt == 0:
            continue
        per_fn[fn][1] += 1
        if count:
            per_fn[fn][0] += 1
        else:
            lineno, kind = kinds[(fn, stmt)]
            missed[fn].append(f"{lineno}:{kind}")
    covered = sum(c for c, _ in per_fn.values())
    total = sum(t for _, t in per_fn.values())
    for fn in sorted(per_fn):
        c, t = per_fn[fn]
        gaps = f"  missed {', '.join(missed[fn])}" if missed[fn] else ""
        print(f"{100 * c / t:6.1f}%  {c:4d}/{t:<4d} {fn}{gaps}")
    pct = 100 * covered / total
    print(f"PL/pgSQL statement coverage: {covered}/{total} = {pct:.1f}%")
    return 0 if pct >= fail_under else 1


if __name__ == "__main__":
    sys.exit(report(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
