"""Point-in-time recovery drill on a throwaway cluster of this test's own.

WAL archiving on, a base backup with pg_basebackup, ledger activity after it, a recorded
target time, more activity, the server lost; then a new data directory from the base backup
recovers from the WAL archive to the target time and is promoted. The recovered ledger must
equal the original as of the target, row for row. The drill's figures (base backup, WAL
replayed, recovery point, recovery time) are written to build/pitr_drill.json;
docs/operations.md quotes them.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest
from keen_dev.databases import CHECKOUT

from keen_sql import backup
from tests_py.support import ledger
from tests_py.support.clusters import cluster_dir

PG_BIN = backup.PG_BIN
REPORT = CHECKOUT / "build" / "pitr_drill.json"


def _wait_archived(conn: psycopg.Connection[Any], walfile: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(
            "SELECT last_archived_wal, failed_count FROM pg_stat_archiver"
        ).fetchone()
        assert row is not None
        if row[0] is not None and row[0] >= walfile:
            return
        assert time.monotonic() < deadline, f"WAL {walfile} not archived (archiver: {row})"
        time.sleep(0.05)


def _wait_promoted(conn_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(conn_url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row == (False,):
            return
        assert time.monotonic() < deadline, "recovery did not finish"
        time.sleep(0.05)


def _log_time(log: str, pattern: str) -> str | None:
    match = re.search(pattern, log)
    return match.group(1) if match else None


@pytest.mark.slow
def test_pitr_recovers_the_ledger_exactly_as_of_the_target_time() -> None:
    figures: dict[str, Any] = {}
    with cluster_dir("pitr") as clusters:
        archive = clusters.path("wal_archive")
        primary = clusters.keen(
            "primary",
            wal_level="replica",
            archive_mode="on",
            archive_command=f"'test ! -f {archive}/%f && cp %p {archive}/%f'",
            max_wal_senders="4",
        )
        with primary.connect("keen") as conn:
            users = [ledger.make_user(conn) for _ in range(3)]
            ledger.activity(conn, users, "before-base", rounds=2)

            # 1. Base backup (fast checkpoint, WAL streamed alongside: self-contained).
            t0 = time.perf_counter()
            base = clusters.base_backup(primary, "base")
            figures["base_backup_s"] = round(time.perf_counter() - t0, 2)
            figures["base_backup_bytes"] = sum(
                f.stat().st_size for f in base.rglob("*") if f.is_file()
            )

            # 2. Activity after the base backup, then the recovery target, then more.
            ledger.activity(conn, users, "after-base", rounds=3)
            expected = ledger.ledger(conn)
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            target: datetime = row[0]
            time.sleep(0.05)
            ledger.activity(conn, users, "after-target", rounds=2)
            final = ledger.ledger(conn)
            assert len(final) > len(expected)

            # 3. Everything up to now is in the archive, then the server is lost.
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert row is not None
            _wait_archived(conn, row[0])
        primary.stop("immediate")
        figures["archived_wal_segments"] = len(list(archive.iterdir()))

        # 4. A new data directory from the base backup, recovering from the archive.
        recovered = clusters.from_copy(
            "recovered",
            base,
            archive_mode="off",
            restore_command=f"'cp {archive}/%f %p'",
            recovery_target_time=f"'{target.isoformat()}'",
            recovery_target_action="'promote'",
        )
        (recovered.data / "recovery.signal").touch()
        t0 = time.perf_counter()
        recovered.start()
        _wait_promoted(recovered.url("keen"))
        figures["recovery_s"] = round(time.perf_counter() - t0, 2)

        label = (base / "backup_label").read_text()
        start_lsn = _log_time(label, r"START WAL LOCATION: (\S+)")
        with recovered.connect("keen") as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (start_lsn,)
            ).fetchone()
            assert row is not None
            figures["wal_replayed_bytes"] = row[0]
            got = ledger.ledger(conn)
            assert got == expected, "the recovered ledger is the ledger as of the target time"
            assert backup.tenant_tables_without_forced_rls(conn) == []
            for name in backup.VERIFIERS:
                violations = backup.run_verifier(conn, name)
                assert not violations, f"{name}: {violations}"
                figures[name] = "absent" if violations is None else "empty"

        log = recovered.log.read_text()
        figures.update(
            target_time=target.isoformat(),
            last_replayed_commit=_log_time(log, r"last completed transaction was at log time (.+)"),
            first_excluded_commit=_log_time(
                log, r"recovery stopping before commit of transaction \d+, time (.+)"
            ),
            ledger_rows_at_target=len(expected),
            ledger_rows_at_loss=len(final),
        )
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
