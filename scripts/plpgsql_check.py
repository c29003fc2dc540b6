"""Run plpgsql_check over every PL/pgSQL function of schema keen in a freshly migrated database.

Usage: .venv/bin/python scripts/plpgsql_check.py [--database-url URL]
Exits non-zero and prints each finding when any function has an error or a warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keen_dev.databases import scratch_database, server_url

# Every PL/pgSQL function of keen, with one table each trigger function is attached to
# (plpgsql_check needs the relation to resolve NEW and OLD).
FUNCTIONS = """
SELECT p.oid::regprocedure::text AS signature,
       (SELECT t.tgrelid FROM pg_trigger AS t WHERE t.tgfoid = p.oid LIMIT 1) AS relid,
       p.prorettype = 'trigger'::regtype AS is_trigger
FROM pg_proc AS p
JOIN pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_language AS l ON l.oid = p.prolang
WHERE n.nspname = 'keen' AND l.lanname = 'plpgsql'
ORDER BY 1
"""

CHECK = """
SELECT lineno, statement, sqlstate, message, detail, level
FROM public.plpgsql_check_function_tb(
  %s::regprocedure, coalesce(%s::oid, 0)::regclass,
  fatal_errors => false, other_warnings => true, extra_warnings => true,
  performance_warnings => false, security_warnings => true)
"""


def check(url: str) -> list[str]:
    """Return one line per plpgsql_check finding on the database at `url`."""
    findings: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
        functions = conn.execute(FUNCTIONS).fetchall()
        for signature, relid, is_trigger in functions:
            if is_trigger and relid is None:
                findings.append(f"{signature}: trigger function attached to no table")
                continue
            for lineno, statement, sqlstate, message, detail, level in conn.execute(
                CHECK, (signature, relid)
            ):
                where = f"line {lineno} {statement}" if lineno else "declaration"
                extra = f" ({detail})" if detail else ""
                findings.append(f"{signature}: {level} {sqlstate} at {where}: {message}{extra}")
        print(f"plpgsql_check: {len(functions)} function(s) checked, {len(findings)} finding(s)")
    return findings


def main() -> int:
    """Check a scratch database migrated from migrations/; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=None)
    admin = parser.parse_args().database_url or server_url()
    with scratch_database(admin, "plpgsql_check", migrate=True) as (_, url):
        findings = check(url)
    for line in findings:
        print(line, file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
