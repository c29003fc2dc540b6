"""Generated `:one` / `:many` calls against the same statements run through raw psycopg.

    .venv/bin/python bench/plugin/bench.py [--rounds 41] [--calls 200] [--rows 1,10,100,1000]

It generates bench/plugin/query.sql with the plugin (sqlc, into a temporary directory) twice:
with the default rows (psycopg's own tuples, typed) and with `rows: named` (NamedTuple rows),
creates a scratch database on ${KEEN_DATABASE_URL:-the embedded cluster} with 10 000 rows,
then, on one autocommit connection, times in every round the generated function and raw
psycopg (`RawCursor`, the same SQL constant, default tuple rows) back to back, `--calls` calls
each, the order swapped every round. Reported per variant: the median over rounds of the mean
wall time per call, and the overhead as the median over rounds of generated / raw - 1 (the
ratio of a round compares two measurements taken under the same load); the same for the
client's CPU time. Both sides share the connection, hence the prepared statement (psycopg
prepares after 5 executions).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from keen_dev.databases import scratch_database, server_url  # noqa: E402

HERE = Path(__file__).resolve().parent


def generate(workdir: Path) -> None:
    """Generate bench/query.sql into `workdir` with sqlc and the plugin, once per row form.

    `bench_queries` has the default rows (psycopg's own tuples, typed); `bench_named` has
    `rows: named` (a NamedTuple class per row).
    """
    (workdir / "bench").symlink_to(HERE)
    codegen = [
        {"out": "bench_queries", "plugin": "psycopg"},
        {"out": "bench_named", "plugin": "psycopg", "options": {"rows": "named"}},
    ]
    config = {
        "version": "2",
        "plugins": [{"name": "psycopg", "process": {"cmd": "sqlc-gen-psycopg", "format": "json"}}],
        "sql": [
            {
                "engine": "postgresql",
                "schema": "bench/schema.sql",
                "queries": "bench/query.sql",
                "codegen": codegen,
            }
        ],
    }
    (workdir / "sqlc.json").write_text(json.dumps(config))
    venv = ROOT / ".venv" / "bin"
    env = {**os.environ, "PATH": f"{venv}:{os.environ.get('PATH', '')}"}
    command = [str(venv / "sqlc"), "generate", "-f", "sqlc.json"]
    subprocess.run(command, cwd=workdir, env=env, check=True)


def seed(conn: psycopg.Connection[Any]) -> None:
    """The table and 10 000 rows."""
    conn.execute((HERE / "schema.sql").read_text().encode())
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with conn.cursor().copy("COPY bench_accounts FROM STDIN") as copy:
        for i in range(1, 10_001):
            note = None if i % 3 else f"note {i}"
            row = (i, uuid.uuid4(), f"user{i}@example.com", Decimal(i) / 7, i % 2 == 0, now, note)
            copy.write_row(row)
    conn.execute("VACUUM ANALYZE bench_accounts")


def timed(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Mean wall-clock and process-CPU seconds per call of `fn` over `calls` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rows", default="1,10,100,1000", help=":many sizes, comma-separated")
    args = parser.parse_args(argv)
    with (
        scratch_database(server_url(), "bench_plugin") as (_, url),
        tempfile.TemporaryDirectory() as tmp,
    ):
        generate(Path(tmp))
        sys.path.insert(0, tmp)
        q = importlib.import_module("bench_queries.query")
        named = importlib.import_module("bench_named.query")
        with psycopg.connect(url, autocommit=True) as conn:
            seed(conn)
            sizes = [int(n) for n in args.rows.split(",")]
            results = run(q, named, conn, args.rounds, args.calls, sizes)
    report(results, args)
    return 0


Variant = tuple[str, Callable[[], object], Callable[[], object]]


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenAccount:
    """The row as a frozen dataclass: the alternative to NamedTuple rows, for comparison."""

    id: int
    owner: uuid.UUID
    email: str
    balance: Decimal
    active: bool
    created_at: dt.datetime
    note: str | None


def _plain(result: object) -> object:
    """Rows as plain tuples, whatever class they are of."""
    if isinstance(result, list):
        return [_plain(r) for r in result]
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.astuple(result)
    return tuple(result) if isinstance(result, tuple) else result


def _frozen_rows(cursor: object) -> Callable[[Any], FrozenAccount]:
    return lambda values: FrozenAccount(*values)


def run(
    q: Any, named: Any, conn: psycopg.Connection[Any], rounds: int, calls: int, sizes: list[int]
) -> list[Result]:
    """Time every variant, generated and raw alternating (order swapped every round).

    `q` is the package of the default row form, `named` the one of `rows: named`.
    """

    def raw_one() -> object:
        with psycopg.RawCursor(conn) as cur:
            cur.execute(q.GET_ACCOUNT, (4242,))
            return cur.fetchone()

    def raw_many(n: int) -> Callable[[], object]:
        def call() -> object:
            with psycopg.RawCursor(conn) as cur:
                cur.execute(q.LIST_ACCOUNTS, (100, n))
                return cur.fetchall()

        return call

    def gen_many(module: Any, n: int) -> Callable[[], object]:
        return lambda: module.list_accounts(conn, first=100, n=n)

    variants: list[Variant] = [(":one", lambda: q.get_account(conn, id=4242), raw_one)]
    variants += [(f":many ({n} rows)", gen_many(q, n), raw_many(n)) for n in sizes]
    variants.append((":one, `rows: named`", lambda: named.get_account(conn, id=4242), raw_one))
    variants += [
        (f":many ({n} rows), `rows: named`", gen_many(named, n), raw_many(n)) for n in sizes
    ]
    # Through the generated bound class (a method on an object holding the connection, the
    # error hook's try around the call): what `q.credits.deduct_credits(…)` costs in keen.
    bound = q.QueryQueries(conn)
    variants.append((":one through the bound class", lambda: bound.get_account(id=4242), raw_one))
    if 100 in sizes:  # one column: the values, against raw rows unpacked by the caller

        def raw_ids() -> object:
            with psycopg.RawCursor(conn) as cur:
                cur.execute(q.LIST_IDS, (100, 100))
                return [r[0] for r in cur.fetchall()]

        variants.append(
            (
                ":many (100 rows) of one column: values",
                lambda: q.list_ids(conn, first=100, n=100),
                raw_ids,
            )
        )
    if 100 in sizes:  # what frozen dataclass rows would cost (not generated; for the design)

        def frozen_many() -> object:
            with psycopg.RawCursor(conn, row_factory=_frozen_rows) as cur:
                cur.execute(q.LIST_ACCOUNTS, (100, 100))
                return cur.fetchall()

        variants.append(
            (":many (100 rows) as frozen dataclasses (not generated)", frozen_many, raw_many(100))
        )
    for _, gen, raw in variants:  # same results; warm up (prepared statements, caches)
        assert _plain(gen()) == _plain(raw())
        timed(gen, 20)
        timed(raw, 20)
    samples: dict[str, list[tuple[float, float, float, float]]] = {v[0]: [] for v in variants}
    for r in range(rounds):
        for label, gen, raw in variants:
            if r % 2:
                (gw, gc), (rw, rc) = timed(gen, calls), timed(raw, calls)
            else:
                (rw, rc), (gw, gc) = timed(raw, calls), timed(gen, calls)
            samples[label].append((gw, rw, gc, rc))
    return [Result(label, s) for label, s in samples.items()]


class Result:
    """The samples of one variant: (generated, raw) wall and CPU seconds per call, by round."""

    def __init__(self, label: str, samples: list[tuple[float, float, float, float]]) -> None:
        self.label = label
        median = statistics.median
        self.gen_wall = median(s[0] for s in samples)
        self.raw_wall = median(s[1] for s in samples)
        self.gen_cpu = median(s[2] for s in samples)
        self.raw_cpu = median(s[3] for s in samples)
        # The ratio within a round pairs measurements taken back to back, under the same load.
        self.wall_ratio = median(s[0] / s[1] for s in samples)
        self.cpu_ratio = median(s[2] / s[3] for s in samples if s[3] > 0)


def report(results: list[Result], args: argparse.Namespace) -> None:
    """Print the results as a Markdown table with the machine and the versions."""
    print(
        f"rounds={args.rounds} calls/round={args.calls}; {platform.python_implementation()} "
        f"{platform.python_version()}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), "
        f"libpq {psycopg.pq.version()}, {platform.machine()} {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        "| call | generated µs/call | raw psycopg µs/call | wall overhead "
        "| client CPU µs/call (gen / raw) | CPU overhead |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.label} | {r.gen_wall * 1e6:.1f} | {r.raw_wall * 1e6:.1f} "
            f"| {100 * (r.wall_ratio - 1):+.1f}% "
            f"| {r.gen_cpu * 1e6:.1f} / {r.raw_cpu * 1e6:.1f} | {100 * (r.cpu_ratio - 1):+.1f}% |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
