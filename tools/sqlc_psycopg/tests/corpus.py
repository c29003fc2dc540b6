"""The plugin's own corpus: cases of schema + queries, generated with sqlc in one run.

A case is a directory `cases/<name>/` with `schema.sql`, one or more query files (every other
`.sql` file), `check.py` (a typed usage example: `check(h)` and `check_async(h)`, see
`harness`) and optionally `case.json`: `{"options": {…plugin options…}, "database": true}`
(`database` turns on sqlc's database-backed analysis, against a scratch database holding the
schema). An error case is a directory `errors/<name>/` with `schema.sql`, query files,
optional `case.json` and `expected.txt`: lines the plugin's (or sqlc's) message must contain.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from keen_dev.databases import create_database, drop_database, scratch_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the plugin project (tools/sqlc_psycopg)
CASES = HERE / "cases"
ERRORS = HERE / "errors"
VENV_BIN = Path(sys.executable).parent  # where sqlc, mypy and the plugin command are


@dataclass(frozen=True)
class Case:
    """One corpus case."""

    name: str
    path: Path
    options: dict[str, Any]
    database: bool

    @property
    def package(self) -> str:
        """The generated package of the case."""
        return f"case_{self.name}"

    @property
    def queries(self) -> list[Path]:
        """The case's query files."""
        return sorted(p for p in self.path.glob("*.sql") if p.name != "schema.sql")

    @property
    def schema(self) -> str:
        """The case's schema SQL."""
        return (self.path / "schema.sql").read_text()


def load(directory: Path) -> list[Case]:
    """The cases of `directory`, by name."""
    cases = []
    for path in sorted(p for p in directory.iterdir() if (p / "schema.sql").is_file()):
        meta = json.loads((path / "case.json").read_text()) if (path / "case.json").exists() else {}
        cases.append(Case(path.name, path, meta.get("options", {}), bool(meta.get("database"))))
    return cases


def config(
    cases: list[Case], db_urls: dict[str, str], plugin_per_case: bool = False
) -> dict[str, Any]:
    """An sqlc config for `cases` (paths relative to where the case directories are linked).

    With `plugin_per_case`, each case runs the plugin under its own name, so that sqlc's
    report (`# package <plugin name>` before each failure) says which case failed.
    """
    entries = []
    for case in cases:
        rel = Path(case.path.parent.name) / case.name
        entry: dict[str, Any] = {
            "engine": "postgresql",
            "schema": str(rel / "schema.sql"),
            "queries": [str(rel / q.name) for q in case.queries],
            "codegen": [
                {
                    "out": f"gen/{case.package}",
                    "plugin": case.name if plugin_per_case else "psycopg",
                    "options": case.options,
                }
            ],
        }
        if case.name in db_urls:
            entry["database"] = {"uri": db_urls[case.name]}
        entries.append(entry)
    plugins = [c.name for c in cases] if plugin_per_case else ["psycopg"]
    return {
        "version": "2",
        "plugins": [
            {"name": name, "process": {"cmd": "sqlc-gen-psycopg", "format": "json"}}
            for name in plugins
        ],
        "sql": entries,
    }


def run_sqlc(
    cases: list[Case], workdir: Path, admin_url: str, plugin_per_case: bool = False
) -> subprocess.CompletedProcess[str]:
    """Generate `cases` into `workdir/gen` with one sqlc run; return sqlc's result.

    Cases asking for database-backed analysis get a scratch database with their schema,
    dropped when sqlc is done.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for directory in {c.path.parent for c in cases}:
        link = workdir / directory.name
        if not link.exists():
            link.symlink_to(directory)
    db_names: dict[str, str] = {}
    db_urls: dict[str, str] = {}
    try:
        for case in cases:
            if case.database:
                db_names[case.name] = scratch_name("plugin_sqlc")
                url = create_database(admin_url, db_names[case.name])
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(case.schema.encode())
                db_urls[case.name] = url
        (workdir / "sqlc.json").write_text(
            json.dumps(config(cases, db_urls, plugin_per_case), indent=1)
        )
        # KEEN_SQLC_PLUGIN_DIR (set by `make coverage`) holds a wrapper of the plugin command
        # that records the plugin's coverage: sqlc runs it as a subprocess.
        first = os.environ.get("KEEN_SQLC_PLUGIN_DIR", str(VENV_BIN))
        env = {**os.environ, "PATH": f"{first}:{VENV_BIN}:{os.environ.get('PATH', '')}"}
        return subprocess.run(
            [str(VENV_BIN / "sqlc"), "generate", "-f", "sqlc.json"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        for name in db_names.values():
            drop_database(admin_url, name)


def copy_checks(cases: list[Case], gen: Path) -> Path:
    """Copy each case's check.py to `gen/checks/check_<case>.py`; return that directory."""
    checks = gen / "checks"
    checks.mkdir(exist_ok=True)
    for case in cases:
        shutil.copy(case.path / "check.py", checks / f"check_{case.name}.py")
    return checks


def run_mypy(gen: Path, cases: list[Case]) -> subprocess.CompletedProcess[str]:
    """mypy --strict over every generated package and check module, in one run."""
    checks = gen / "checks"
    targets = [str(gen / c.package) for c in cases] + [
        str(checks / f"check_{c.name}.py") for c in cases
    ]
    env = {**os.environ, "MYPYPATH": f"{gen}{os.pathsep}{checks}"}
    # A cache that outlives the run keeps the stdlib and psycopg checked; only the freshly
    # generated packages are checked again (they live in a new directory every run).
    cache = str(ROOT / ".mypy_cache" / "plugin-corpus")
    return subprocess.run(
        [str(VENV_BIN / "mypy"), "--strict", "--cache-dir", cache, *targets],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def reports(stderr: str) -> dict[str, str]:
    """sqlc's error output split by `# package <name>` headers: name → its messages."""
    out: dict[str, str] = {}
    name = ""
    for line in stderr.splitlines():
        if line.startswith("# package "):
            name = line.removeprefix("# package ").strip()
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out
