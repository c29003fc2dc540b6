"""The throwaway-cluster helper cleans up after a test run that was killed (SIGKILL)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from keen_dev.clusters import ClusterDir, give_to_postgres, sweep_orphans


def _dir(parent: Path, name: str, owner: int) -> Path:
    path = parent / name
    path.mkdir(mode=0o755)
    give_to_postgres(path)
    (path / "owner.pid").write_text(str(owner))
    return path


def _runs(pid: int) -> bool:
    """Whether `pid` runs (here the postmaster is our child: once stopped, a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_clusters_of_a_dead_run_are_stopped_and_removed_and_a_live_runs_kept() -> None:
    parent = Path(tempfile.mkdtemp(prefix="keen-sweep-test-"))
    parent.chmod(0o755)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs: the killed test process
    orphan = _dir(parent, "keen_orphan_1", gone.pid)
    live = _dir(parent, "keen_live_1", os.getpid())
    clusters = ClusterDir(orphan)
    try:
        cluster = clusters.init("c")
        cluster.start()
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        (parent / "keen_notes.md").write_text("not a cluster directory")

        assert sweep_orphans(parent) == [orphan]

        assert not orphan.exists() and live.exists() and (parent / "keen_notes.md").exists()
        assert not _runs(postmaster), f"postmaster {postmaster} of the orphan still runs"
    finally:
        clusters.close()
        shutil.rmtree(parent, ignore_errors=True)
