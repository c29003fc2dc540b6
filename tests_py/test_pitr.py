"""The point-in-time recovery drill with pgBackRest (keen_dev/pitr.py), in `make test`.

The drill raises `DrillFailed` on any broken promise (ledger not exactly as of the target,
invariant checks not empty, RLS not forced, a base backup pg_verifybackup does not accept or
a damaged one it does, a file readable beyond its owner); the test also checks the figures it
reports: the incremental backup was the one restored, and recovery stopped at the target.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from keen_dev import pitr


@pytest.mark.slow
def test_pgbackrest_restores_the_ledger_exactly_as_of_the_target_time() -> None:
    figures = pitr.run()
    full, incr = figures["full_backup"], figures["incr_backup"]
    assert incr["label"].startswith(full["label"] + "_") and incr["label"].endswith("I")
    assert figures["restored_backup_set"] == incr["label"], "the latest backup before the target"
    assert 0 < incr["changed_bytes"] < full["changed_bytes"]
    assert figures["ledger_rows_recovered"] == figures["ledger_rows_at_target"]
    assert figures["ledger_rows_at_target"] < figures["ledger_rows_at_loss"]
    target = datetime.fromisoformat(figures["target_time"])
    last = datetime.fromisoformat(figures["last_recovered_commit"])
    first_out = datetime.fromisoformat(figures["first_excluded_commit"])
    assert last <= target < first_out, "recovery stopped between the two commits around the target"
    assert figures["verify_ledger"] == figures["verify_usage_stats"] == "empty"
    assert figures["base_backup"]["damaged_file_refused"] is True
    assert figures["files_owner_only"] is True
