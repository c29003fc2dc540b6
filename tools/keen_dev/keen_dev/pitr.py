"""Point-in-time recovery drill with pgBackRest, end to end, on a throwaway durable cluster.

Run by `make pitr-drill` (scripts/pitr_drill.py) and by tests_py/test_pitr.py in `make test`.

A cluster of its own (fsync on, WAL archived by `pgbackrest archive-push`), a stanza, a
full backup, ledger activity, an incremental backup, more activity, a recorded target
time, more activity, the server lost (`pg_ctl stop -m immediate`); then `pgbackrest restore
--type=time` into a NEW data directory, which recovers to the target and is promoted. The
drill raises `DrillFailed` unless the recovered ledger equals the original as of the target row
for row, `keen.verify_ledger()` and `keen.verify_usage_stats()` are empty, RLS is forced on
every tenant table, `pg_verifybackup` accepts a `pg_basebackup` of the primary (and refuses
it once a file is damaged), and every file of the repository, the base backup and the
restored cluster is readable by its owner only. `run()` returns its figures and writes
them to the report file (docs/operations.md quotes them).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from keen_dev import ledger
from keen_dev.clusters import (
    Cluster,
    ClusterDir,
    as_postgres,
    cluster_dir,
    give_to_postgres,
)
from keen_dev.databases import CHECKOUT
from keen_sql import backup, migrations

PG_BIN = backup.PG_BIN
PGBACKREST = "pgbackrest"
STANZA = "keen"
REPORT = CHECKOUT / "build" / "pitr_drill.json"


class DrillFailed(Exception):
    """A step of the drill did not do what the procedure promises."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise DrillFailed(what)


def _run(args: Sequence[str], timeout: float = 300.0) -> str:
    """Run a tool as the clusters' OS user with umask 077; return stdout, fail with stderr."""
    done = subprocess.run(
        as_postgres(args), capture_output=True, text=True, timeout=timeout, check=False, umask=0o077
    )
    if done.returncode != 0:
        raise DrillFailed(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def _write_config(clusters: ClusterDir, primary: Cluster) -> Path:
    """pgbackrest.conf of the drill: a local repository, the primary as pg1 of the stanza."""
    repo = clusters.path("repo")
    locks = clusters.path("pgbackrest-lock")
    config = clusters.root / "pgbackrest.conf"
    config.write_text(
        "[global]\n"
        f"repo1-path={repo}\n"
        "repo1-retention-full=2\n"
        f"lock-path={locks}\n"
        "log-level-console=warn\n"
        "log-level-file=off\n"
        "compress-type=lz4\n"
        "start-fast=y\n"
        "repo1-bundle=y\n"
        "process-max=2\n"
        # Files get 0640/0750 unless the process umask decides: the drill runs with 077
        # and the postmaster (archive-push) has 077 too, so the repository is owner-only.
        "neutral-umask=n\n"
        f"\n[{STANZA}]\n"
        f"pg1-path={primary.data}\n"
        f"pg1-socket-path={primary.run}\n"
        f"pg1-port={primary.port}\n"
    )
    config.chmod(0o600)
    give_to_postgres(config)
    return config


def _pgbackrest(config: Path, *args: str) -> str:
    return _run([PGBACKREST, f"--config={config}", f"--stanza={STANZA}", *args])


def _wait_archived(conn: psycopg.Connection[Any], walfile: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(
            "SELECT last_archived_wal, failed_count FROM pg_stat_archiver"
        ).fetchone()
        assert row is not None
        if row[0] is not None and row[0] >= walfile:
            return
        _check(time.monotonic() < deadline, f"WAL {walfile} not archived (archiver: {row})")
        time.sleep(0.05)


def _wait_promoted(cluster: Cluster, timeout: float = 60.0) -> None:
    cluster.wait_ready("keen", timeout)
    deadline = time.monotonic() + timeout
    while True:
        with cluster.connect("keen") as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row == (False,):
            return
        _check(time.monotonic() < deadline, "recovery did not finish")
        time.sleep(0.05)


def _log_time(log: str, pattern: str) -> str | None:
    match = re.search(pattern, log)
    return match.group(1) if match else None


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _not_owner_only(*roots: Path) -> list[str]:
    """Files and directories under `roots` that their group or others may read."""
    found = []
    for root in roots:
        for p in [root, *root.rglob("*")]:
            if not p.is_symlink() and p.stat().st_mode & 0o077:
                found.append(f"{p} {oct(p.stat().st_mode & 0o777)}")
    return found


def _backup(config: Path, kind: str) -> dict[str, Any]:
    """One pgBackRest backup of `kind`; its label, time and sizes from `pgbackrest info`."""
    t0 = time.perf_counter()
    _pgbackrest(config, f"--type={kind}", "backup")
    seconds = time.perf_counter() - t0
    info = json.loads(_pgbackrest(config, "--output=json", "info"))
    last = info[0]["backup"][-1]
    _check(last["type"] == kind, f"the last backup is {last['type']}, not {kind}")
    return {
        "label": last["label"],
        "seconds": round(seconds, 2),
        "database_bytes": last["info"]["size"],
        "changed_bytes": last["info"]["delta"],
        "repository_bytes": last["info"]["repository"]["delta"],
    }


def _verify_base_backup(clusters: ClusterDir, primary: Cluster) -> dict[str, Any]:
    """pg_basebackup of the primary, checked by pg_verifybackup; then a damaged copy refused."""
    t0 = time.perf_counter()
    base = clusters.base_backup(primary, "base")
    taken = time.perf_counter() - t0
    t0 = time.perf_counter()
    _run([str(PG_BIN / "pg_verifybackup"), "--quiet", str(base)])
    checked = time.perf_counter() - t0
    figures = {
        "seconds": round(taken, 2),
        "bytes": _size(base),
        "verify_seconds": round(checked, 2),
    }
    damaged = base / "global" / "pg_control"
    with damaged.open("r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    try:
        _run([str(PG_BIN / "pg_verifybackup"), "--quiet", str(base)])
    except DrillFailed as exc:
        figures["damaged_file_refused"] = "checksum mismatch" in str(exc)
    _check(figures.get("damaged_file_refused") is True, "pg_verifybackup accepted a damaged file")
    return figures


def run(report: Path | None = REPORT) -> dict[str, Any]:
    """Run the whole drill; return its figures (also written to `report`), raise on failure."""
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    with cluster_dir("pitr") as clusters:
        primary = clusters.init(
            "primary", wal_level="replica", archive_mode="on", max_wal_senders="4"
        )
        config = _write_config(clusters, primary)
        primary.configure(
            fsync="on",
            archive_command=f"'{PGBACKREST} --config={config} --stanza={STANZA} archive-push %p'",
        )
        primary.start()
        with primary.connect() as conn:
            conn.execute("CREATE DATABASE keen")
        migrations.apply(primary.url("keen"))
        figures["cluster_setup_s"] = round(time.perf_counter() - started, 2)
        t0 = time.perf_counter()
        _pgbackrest(config, "stanza-create")
        _pgbackrest(config, "check")  # archiving works end to end
        figures["stanza_s"] = round(time.perf_counter() - t0, 2)

        with primary.connect("keen") as conn:
            users = [ledger.make_user(conn) for _ in range(2)]
            ledger.activity(conn, users, "before-full", rounds=1)
            figures["full_backup"] = _backup(config, "full")
            ledger.activity(conn, users, "after-full", rounds=1)
            figures["incr_backup"] = _backup(config, "incr")
            figures["base_backup"] = _verify_base_backup(clusters, primary)
            ledger.activity(conn, users, "after-incr", rounds=1)

            expected = ledger.ledger(conn)
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            target: datetime = row[0]
            time.sleep(0.05)
            ledger.activity(conn, users, "after-target", rounds=1)
            final = ledger.ledger(conn)
            _check(len(final) > len(expected), "no activity after the target")

            # Everything up to now archived, then the server is lost.
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert row is not None
            _wait_archived(conn, row[0])
        primary.stop("immediate")

        # A new data directory, restored by pgBackRest to the target time.
        restored = clusters.path("restored")
        t0 = time.perf_counter()
        out = _run(
            [PGBACKREST, f"--config={config}", f"--stanza={STANZA}", f"--pg1-path={restored}",
             "--log-level-console=info", "--type=time", f"--target={target.isoformat(sep=' ')}",
             "--target-action=promote", "restore"]
        )  # fmt: skip
        figures["restore_s"] = round(time.perf_counter() - t0, 2)
        figures["restored_backup_set"] = _log_time(out, r"restore backup set ([^\s,]+)")
        # The restored server must not archive into the old repository's timeline history
        # before an operator decides so; it gets its own socket and port.
        recovered = clusters.adopt("restored", restored, archive_mode="off")
        t0 = time.perf_counter()
        recovered.start()
        _wait_promoted(recovered)
        figures["recovery_s"] = round(time.perf_counter() - t0, 2)

        with recovered.connect("keen") as conn:
            got = ledger.ledger(conn)
            _check(got == expected, "the recovered ledger is not the ledger as of the target")
            _check(backup.tenant_tables_without_forced_rls(conn) == [], "RLS not forced")
            for name in backup.VERIFIERS:
                violations = backup.run_verifier(conn, name)
                _check(not violations, f"{name}: {violations}")
                figures[name] = "absent" if violations is None else "empty"

        loose = _not_owner_only(clusters.root / "repo", clusters.root / "base", restored)
        _check(not loose, "readable beyond their owner:\n" + "\n".join(loose[:10]))

        log = recovered.log.read_text()
        last = _log_time(log, r"last completed transaction was at log time (.+)")
        stop = _log_time(log, r"recovery stopping before commit of transaction \d+, time (.+)")
        figures.update(
            target_time=target.isoformat(),
            last_recovered_commit=last,
            first_excluded_commit=stop,
            last_commit_before_target_ms=(
                round((target - datetime.fromisoformat(last)).total_seconds() * 1000, 3)
                if last
                else None
            ),
            ledger_rows_recovered=len(got),
            ledger_rows_at_target=len(expected),
            ledger_rows_at_loss=len(final),
            files_owner_only=True,
        )
        figures["archived_wal_segments"] = sum(
            1 for p in (clusters.root / "repo" / "archive").rglob("*") if p.suffix == ".lz4"
        )
    figures["drill_s"] = round(time.perf_counter() - started, 1)
    if report is not None:
        report.parent.mkdir(exist_ok=True)
        report.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
