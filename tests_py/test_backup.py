"""Backup → drop → restore → verify, and the restore's refusals (keen_sql.backup, CLI)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from keen_dev import ledger
from keen_dev.databases import drop_database, scratch_name
from psycopg import sql

from keen_sql import backup, cli
from keen_sql.backup import BackupError, Manifest, RestoreRefused


@pytest.fixture
def source(fresh_db_url: str) -> tuple[str, list[uuid.UUID]]:
    """A migrated database with three tenants and a few ledger entries each."""
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        users = [ledger.make_user(conn) for _ in range(3)]
        ledger.activity(conn, users, "seed", rounds=2)
    return fresh_db_url, users


@pytest.fixture
def target(admin_url: str) -> Iterator[str]:
    """The name of a database a restore may create; dropped after the test."""
    name = scratch_name("restore") + " Odd-Name Ω"  # quoting in SQL and in URLs
    try:
        yield name
    finally:
        drop_database(admin_url, name)


def _dbname(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def test_backup_drop_restore_verifies_counts_ledger_and_rls(
    admin_url: str, source: tuple[str, list[uuid.UUID]], target: str, tmp_path: Path
) -> None:
    src_url, users = source
    with psycopg.connect(src_url) as conn:
        before = ledger.ledger(conn)
    done = backup.backup(src_url, tmp_path)
    manifest = json.loads(done.manifest_path.read_text())
    assert manifest["facts"]["row_counts"]["credit_transactions"] == len(before) == 12
    assert manifest["facts"]["migrations"], "the manifest names the applied migrations"
    assert manifest["dump_sha256"] and done.dump_path.stat().st_size == manifest["dump_bytes"]

    drop_database(admin_url, _dbname(src_url))
    report = backup.restore(admin_url, done.dump_path, target)

    assert report.ok, report.problems
    restored = backup.url_with_dbname(admin_url, target)
    with psycopg.connect(restored, autocommit=True) as conn:
        assert ledger.ledger(conn) == before
        # The restored tables keep their owner, their grants and their policies: a tenant
        # acting as keen_app sees its own four entries and nothing of the other tenants.
        owners = conn.execute(
            "SELECT DISTINCT relowner::regrole::text FROM pg_class"
            " WHERE relnamespace = 'keen'::regnamespace"
        ).fetchall()
        assert owners == [("keen_owner",)]
        with ledger.as_tenant(conn, users[0]):
            seen = conn.execute("SELECT DISTINCT user_id FROM keen.credit_transactions").fetchall()
            assert seen == [(users[0],)]
        assert backup.tenant_tables_without_forced_rls(conn) == []


def test_backup_manifest_matches_dump_under_concurrent_writes(
    admin_url: str, source: tuple[str, list[uuid.UUID]], target: str, tmp_path: Path
) -> None:
    src_url, users = source
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(src_url, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                with ledger.as_tenant(conn, users[n % 3]):
                    ledger.post(conn, Decimal("1.0000"), f"race-{n}")
                n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        done = backup.backup(src_url, tmp_path)
    finally:
        stop.set()
        writer.join()
    # Counts and ledger checksum were read in the snapshot pg_dump exported: the restored
    # database matches them exactly although writes went on during the dump.
    report = backup.restore(admin_url, done.dump_path, target)
    assert report.ok, report.problems


def test_restore_refuses_a_non_empty_database(
    admin_url: str, source: tuple[str, list[uuid.UUID]], tmp_path: Path
) -> None:
    src_url, _ = source
    done = backup.backup(src_url, tmp_path)
    with psycopg.connect(src_url) as conn:
        before = ledger.ledger(conn)

    with pytest.raises(RestoreRefused, match="exists and is not empty"):
        backup.restore(admin_url, done.dump_path, _dbname(src_url))

    with psycopg.connect(src_url) as conn:
        assert ledger.ledger(conn) == before, "the refused target is left untouched"


def test_restore_into_an_existing_empty_database_is_allowed(
    admin_url: str, source: tuple[str, list[uuid.UUID]], empty_db_url: str, tmp_path: Path
) -> None:
    done = backup.backup(source[0], tmp_path)
    report = backup.restore(admin_url, done.dump_path, _dbname(empty_db_url))
    assert report.ok, report.problems


def test_restore_refuses_a_dump_that_does_not_match_its_manifest(
    admin_url: str, source: tuple[str, list[uuid.UUID]], target: str, tmp_path: Path
) -> None:
    done = backup.backup(source[0], tmp_path)
    with done.dump_path.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BackupError, match="does not match the checksum"):
        backup.restore(admin_url, done.dump_path, target)
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (target,))
        assert row.fetchone() == (0,), "nothing is created for a damaged dump"


def test_restore_refuses_when_a_role_is_missing_on_the_server(
    admin_url: str, source: tuple[str, list[uuid.UUID]], target: str, tmp_path: Path
) -> None:
    done = backup.backup(source[0], tmp_path)
    data = json.loads(done.manifest_path.read_text())
    data["facts"]["roles"].append("keen_role_that_does_not_exist")
    done.manifest_path.write_text(json.dumps(data))
    with pytest.raises(RestoreRefused, match="keen_role_that_does_not_exist"):
        backup.restore(admin_url, done.dump_path, target)


def test_verify_reports_every_difference_from_the_manifest(
    admin_url: str, source: tuple[str, list[uuid.UUID]], target: str, tmp_path: Path
) -> None:
    done = backup.backup(source[0], tmp_path)
    backup.restore(admin_url, done.dump_path, target)
    restored = backup.url_with_dbname(admin_url, target)
    with psycopg.connect(restored, autocommit=True) as conn:
        conn.execute("ALTER TABLE keen.auth_tokens NO FORCE ROW LEVEL SECURITY")
        conn.execute("GRANT SELECT ON keen.credit_holds TO keen_analytics")
        conn.execute("GRANT SELECT (password_hash) ON keen.users TO keen_app")
        ledger.make_user(conn, "intruder")

    report = backup.verify(restored, Manifest.load(done.manifest_path))

    problems = "\n".join(report.problems)
    assert "RLS not enabled and forced on keen.auth_tokens" in problems
    assert "row count of keen.users: expected 3, found 4" in problems
    assert "keen_analytics=r/keen_owner" in problems
    assert "unexpected: column users.password_hash acl=keen_app=r/" in problems
    assert not report.ok


def test_cli_backup_then_restore_exits_0_and_refuses_non_empty_with_2(
    admin_url: str,
    source: tuple[str, list[uuid.UUID]],
    target: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src_url, _ = source
    assert cli.main(["--database-url", src_url, "backup", "--output-dir", str(tmp_path)]) == 0
    (dump,) = tmp_path.glob("*.dump")
    assert (tmp_path / dump.name.replace(".dump", ".manifest.json")).is_file()

    assert cli.main(["--database-url", admin_url, "restore", str(dump), "--target-db", target]) == 0
    assert "verified" in capsys.readouterr().out

    code = cli.main(["--database-url", admin_url, "restore", str(dump), "--target-db", target])
    assert code == 3  # refused: a failure to run, not a usage error
    assert "not empty" in capsys.readouterr().err


def test_backup_without_rls_bypass_fails_cleanly_and_leaves_no_file(
    admin_url: str, source: tuple[str, list[uuid.UUID]], tmp_path: Path
) -> None:
    # A login in keen_owner reads everything through owner_all, but pg_dump refuses tables
    # whose policies would apply: backups need a superuser or a BYPASSRLS role.
    src_url = source[0]
    name = f"keen_test_backup_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE keen_owner").format(role))
    try:
        with psycopg.connect(src_url, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role))
        url = src_url.replace("postgresql://postgres@", f"postgresql://{name}@", 1)
        with pytest.raises(BackupError, match="row-level security"):
            backup.backup(url, tmp_path)
        assert list(tmp_path.iterdir()) == []
    finally:
        with psycopg.connect(src_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(role))
