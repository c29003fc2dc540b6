"""Throwaway PostgreSQL clusters owned by one test: for drills that stop, restart or recover a
server (PITR, restarts under load, replicas), never done to the shared embedded cluster.

Like scripts/db.sh: initdb and pg_ctl run as the unprivileged `postgres` OS user when the
tests run as root; each cluster listens only on a Unix socket in its own directory, so no
port can clash. `cluster_dir()` removes everything, stopping every cluster it made, even when
the test fails; a run killed before it could (SIGKILL) leaves its clusters running, and the
next `cluster_dir()` stops and removes them (`sweep_orphans`).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from keen_sql import migrations
from keen_sql.backup import PG_BIN

_AS_ROOT = os.geteuid() == 0


def as_postgres(args: Sequence[str]) -> list[str]:
    """Return `args` run as the `postgres` OS user when we are root (postgres refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if _AS_ROOT else list(args)


def give_to_postgres(path: Path) -> None:
    """Make `path` (recursively) owned by the `postgres` OS user when we are root."""
    if _AS_ROOT:
        subprocess.run(["chown", "-R", "postgres:postgres", str(path)], check=True)


def run_pg(args: Sequence[str], timeout: float = 120.0) -> str:
    """Run a PostgreSQL tool as the cluster's OS user; return stdout, fail with its stderr."""
    done = subprocess.run(
        as_postgres(args), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def pg_ctl_stop(data: Path, mode: str) -> None:
    """`pg_ctl stop` of the cluster in `data` (`fast`, or `immediate`), waiting for it."""
    run_pg([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"])


@dataclass
class Cluster:
    """One cluster: its data directory, socket directory, port and log file."""

    data: Path
    run: Path
    port: int
    log: Path
    settings: dict[str, str] = field(default_factory=dict)

    def url(self, dbname: str = "postgres") -> str:
        """Superuser URL of database `dbname` on this cluster (Unix socket)."""
        return f"postgresql://postgres@/{dbname}?host={self.run}&port={self.port}"

    def configure(self, **settings: str) -> None:
        """Append settings to postgresql.conf (values already quoted as the file wants)."""
        self.settings.update(settings)
        with (self.data / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        run_pg(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`, or `immediate` to simulate a crash); no-op when stopped."""
        if self.running():
            pg_ctl_stop(self.data, mode)

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the server again (all its connections are cut)."""
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        """True while the postmaster of this data directory runs."""
        done = subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        """Open an autocommit superuser connection to `dbname`."""
        return psycopg.connect(self.url(dbname), autocommit=True)

    def wait_ready(self, dbname: str = "postgres", timeout: float = 60.0) -> None:
        """Wait until `dbname` accepts connections (after a restart or during recovery)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect(dbname):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


class ClusterDir:
    """A temporary directory, readable by `postgres`, holding clusters and their archives."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clusters: list[Cluster] = []

    def path(self, name: str) -> Path:
        """Return a new subdirectory `name`, owned by the cluster's OS user."""
        p = self.root / name
        p.mkdir(mode=0o700)
        give_to_postgres(p)
        return p

    def _new(self, name: str, data: Path) -> Cluster:
        run = self.path(f"{name}.run")
        cluster = Cluster(
            data=data, run=run, port=random.randint(20000, 60000), log=self.root / f"{name}.log"
        )
        self.clusters.append(cluster)
        return cluster

    def init(self, name: str, **settings: str) -> Cluster:
        """initdb a cluster (1 MB WAL segments, socket only) with `settings`; not started."""
        data = self.root / name
        run_pg(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--wal-segsize=1",
                "--no-sync",
            ]
        )
        cluster = self._new(name, data)
        cluster.configure(
            listen_addresses="''",
            port=str(cluster.port),
            unix_socket_directories=f"'{cluster.run}'",
            shared_buffers="'16MB'",
            max_connections="40",
            fsync="off",
            log_min_messages="warning",
            **settings,
        )
        return cluster

    def keen(self, name: str, **settings: str) -> Cluster:
        """initdb and start a cluster with a database `keen` migrated by keen_sql.migrations."""
        cluster = self.init(name, **settings)
        cluster.start()
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE keen")
        migrations.apply(cluster.url("keen"))
        return cluster

    def base_backup(self, source: Cluster, name: str, *options: str) -> Path:
        """pg_basebackup of `source` (fast checkpoint, WAL streamed) into directory `name`."""
        target = self.root / name
        run_pg(
            [str(PG_BIN / "pg_basebackup"), "-D", str(target), "-d", source.url(),
             "-c", "fast", "-X", "stream", "--no-sync", *options]
        )  # fmt: skip
        return target

    def from_copy(self, name: str, source: Path, **settings: str) -> Cluster:
        """A cluster whose data directory is a copy of `source` (a base backup), not started.

        Socket, port and `settings` are set in postgresql.auto.conf, which wins over what
        the copied postgresql.conf says.
        """
        data = self.root / name
        shutil.copytree(source, data, symlinks=True)
        return self.adopt(name, data, **settings)

    def adopt(self, name: str, data: Path, **settings: str) -> Cluster:
        """A cluster of an existing data directory (a copy, or restored by a tool), not started.

        Socket, port and `settings` go into postgresql.auto.conf, as in `from_copy`.
        """
        give_to_postgres(data)
        cluster = self._new(name, data)
        lines = {
            "port": str(cluster.port),
            "unix_socket_directories": f"'{cluster.run}'",
            **settings,
        }
        with (data / "postgresql.auto.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in lines.items())
        return cluster

    def replica_of(self, primary: Cluster, name: str) -> Cluster:
        """A streaming replica of `primary` (`pg_basebackup -R`), started and accepting reads."""
        base = self.base_backup(primary, f"{name}_base", "-R")
        replica = self.from_copy(name, base, hot_standby="on")
        replica.start()
        replica.wait_ready("keen")
        return replica

    def close(self) -> None:
        """Stop every cluster immediately and remove the directory."""
        for cluster in self.clusters:
            with suppress(Exception):
                cluster.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


_OWNER = "owner.pid"  # in a cluster directory: the pid of the test process that made it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def sweep_orphans(temp: Path) -> list[Path]:
    """Stop and remove the cluster directories under `temp` whose test process is gone.

    Only directories this module made (`keen_*` with an owner file) are touched; a live
    owner's directory is left alone, whoever it is. Returns the directories removed.
    """
    removed = []
    for root in sorted(temp.glob("keen_*")):
        try:
            owner = int((root / _OWNER).read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        for pid_file in root.glob("*/postmaster.pid"):
            with suppress(Exception):
                pg_ctl_stop(pid_file.parent, "immediate")
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


@contextmanager
def cluster_dir(prefix: str) -> Iterator[ClusterDir]:
    """Yield a fresh `ClusterDir` under the system temp dir; clean it up whatever happens."""
    temp = Path(tempfile.gettempdir())
    sweep_orphans(temp)
    root = Path(tempfile.mkdtemp(prefix=f"keen_{prefix}_", dir=temp))
    (root / _OWNER).write_text(str(os.getpid()))
    root.chmod(0o755)
    give_to_postgres(root)
    clusters = ClusterDir(root)
    try:
        yield clusters
    finally:
        clusters.close()
