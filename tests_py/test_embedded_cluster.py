"""scripts/db.sh, the checkout's embedded cluster, from any checkout location and user.

pytest's own temporary directories are mode 0700, like root's home: two checkouts made there
(scripts/db.sh is all the cluster needs) are what `git clone … /root/keen-sql` gives. As
root, the cluster runs as `postgres`, which cannot reach them: the cluster lives outside the
checkout and .pg links to it. As another user, .pg/ of the checkout holds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from keen_dev.databases import CHECKOUT

AS_ROOT = os.geteuid() == 0
# A port of their own: the checkouts' clusters never meet this checkout's own cluster.
PORT = "55499"


def db_sh(checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checkout / "scripts" / "db.sh"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KEEN_EMBEDDED_PORT": PORT, **env},
    )


def make_checkout(parent: Path, name: str) -> Path:
    checkout = parent / name
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(CHECKOUT / "scripts" / "db.sh", checkout / "scripts" / "db.sh")
    return checkout


@pytest.fixture
def checkouts(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two checkouts side by side under a 0700 directory; their clusters removed afterwards."""
    parent = tmp_path / "private"
    parent.mkdir(mode=0o700)
    first, second = make_checkout(parent, "keen-sql"), make_checkout(parent, "keen-sql-2")
    try:
        yield first, second
    finally:
        for checkout in (first, second):
            db_sh(checkout, "down")
            pg = checkout / ".pg"
            if pg.is_symlink():
                shutil.rmtree(os.readlink(pg), ignore_errors=True)


def test_two_checkouts_under_a_0700_parent_each_run_a_cluster_of_their_own(
    checkouts: tuple[Path, Path],
) -> None:
    first, second = checkouts
    assert (first.parent.stat().st_mode & 0o777) == 0o700
    # What an earlier, failed start left behind is no obstacle.
    (first / ".pg" / "run").mkdir(parents=True)

    up = [db_sh(c, "up") for c in (first, second)]
    assert [r.returncode for r in up] == [0, 0], [r.stderr for r in up]

    urls = [db_sh(c, "url").stdout.strip() for c in (first, second)]
    assert urls[0] != urls[1]
    directories = []
    for url in urls:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert row is not None
        directories.append(str(row[0]))
    assert directories[0] != directories[1]
    for checkout, directory in zip((first, second), directories, strict=True):
        assert Path(directory) == (checkout / ".pg" / "data").resolve()
        if AS_ROOT:
            # postgres cannot reach the checkout: the cluster lives outside it, private.
            assert (checkout / ".pg").is_symlink()
            outside = (checkout / ".pg").resolve()
            assert outside.parent == Path("/var/tmp") and outside.owner() == "postgres"
            assert (outside.stat().st_mode & 0o777) == 0o700
        else:
            assert not (checkout / ".pg").is_symlink()

    # Up again is a no-op; down stops only its own cluster.
    assert db_sh(first, "up").returncode == 0
    assert db_sh(first, "down").returncode == 0
    assert db_sh(first, "status").returncode != 0
    assert db_sh(second, "status").returncode == 0


def test_db_sh_says_in_one_line_what_stops_it(checkouts: tuple[Path, Path]) -> None:
    first, _ = checkouts
    result = db_sh(first, "up", KEEN_PG_BIN="/nonexistent/postgresql/bin")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "PostgreSQL 15 is not installed" in line and "make setup" in line


def test_as_a_normal_user_the_cluster_lives_in_the_checkout() -> None:
    # As root, run db.sh as the unprivileged user `postgres` from a checkout it owns (as
    # another user, this test's own user is that normal user).
    as_user = ["runuser", "-u", "postgres", "--"] if AS_ROOT else []
    owner = subprocess.run(
        [*as_user, "mktemp", "-d", "/tmp/keen-sql-user.XXXXXX"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    checkout = Path(owner) / "keen-sql"
    env = ["env", f"KEEN_EMBEDDED_PORT={PORT}"]
    db_sh = str(checkout / "scripts" / "db.sh")
    try:
        subprocess.run([*as_user, "mkdir", "-p", str(checkout / "scripts")], check=True)
        # The script goes in through stdin: this checkout may sit where that user cannot read
        # (a clone under a 0700 parent, as CI's may).
        subprocess.run(
            [*as_user, "sh", "-c", 'cat > "$1" && chmod 755 "$1"', "sh", db_sh],
            input=(CHECKOUT / "scripts" / "db.sh").read_bytes(),
            check=True,
        )
        up = subprocess.run([*as_user, *env, db_sh, "up"], capture_output=True, text=True)
        assert up.returncode == 0, up.stderr
        assert f"host={checkout}/.pg/run" in up.stdout
        assert (checkout / ".pg" / "data" / "PG_VERSION").is_file()
        assert not (checkout / ".pg").is_symlink()
        with psycopg.connect(up.stdout.strip().rsplit(" ", 1)[-1]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        subprocess.run([*as_user, *env, db_sh, "down"], capture_output=True, check=False)
        shutil.rmtree(owner, ignore_errors=True)
