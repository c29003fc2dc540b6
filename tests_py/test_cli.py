"""The `keen-sql` command line: exit statuses, --version, options anywhere, errors in one line.

Exit status: 0 success, 1 a finding, 2 a usage error, 3 a failure to connect or run.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib import metadata

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from keen_sql import cli, migrations

UNREACHABLE = "host=/nonexistent/keen-sql-test port=5 dbname=nothing connect_timeout=2"


def run(*argv: str) -> tuple[int, str, str]:
    """Run the installed `keen-sql` command as a user would; return (status, stdout, stderr)."""
    keen_sql = f"{sys.prefix}/bin/keen-sql"
    done = subprocess.run([keen_sql, *argv], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def login_without_privileges(admin_url: str, empty_db_url: str) -> Iterator[str]:
    """A conninfo to the empty database as a fresh login role that may create nothing."""
    role = f"keen_test_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield make_conninfo(empty_db_url, user=role)
    finally:
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_version_prints_the_package_version_and_exits_0() -> None:
    status, out, _ = run("--version")
    assert status == 0
    assert out.strip() == f"keen-sql {metadata.version('keen-sql')}"


def test_success_exits_0_with_options_before_or_after_the_subcommand(
    empty_db_url: str,
) -> None:
    status, out, err = run("migrate", "--database-url", empty_db_url)
    assert (status, err) == (0, "")
    assert f"applied {len(migrations.read())} migration(s)" in out
    before = run("--database-url", empty_db_url, "status")
    after = run("status", "--database-url", empty_db_url)
    assert before == after and before[0] == 0
    assert "pending" not in before[1]
    # and in a nested subcommand, as a key=value conninfo
    conninfo = make_conninfo("", **conninfo_to_dict(empty_db_url))
    assert run("credits", "verify", "--database-url", conninfo)[0] == 0


def test_a_finding_exits_1(empty_db_url: str) -> None:
    # An empty database has pending migrations: health finds it unfit.
    status, out, _ = run("health", "--database-url", empty_db_url)
    assert status == 1
    assert "pending" in out


def test_a_usage_error_exits_2_in_one_line() -> None:
    status, out, err = run("migrate", "--no-such-option")
    assert status == 2 and out == ""
    assert err.strip().splitlines()[-1].startswith("keen-sql: error: unrecognized arguments")
    assert run("no-such-command")[0] == 2
    assert run()[0] == 2


def test_a_connection_failure_exits_3_in_one_line_with_advice() -> None:
    status, out, err = run("migrate", "--database-url", UNREACHABLE)
    assert status == 3 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("keen-sql migrate: cannot connect to the database:")
    assert "/nonexistent/keen-sql-test" in lines[0]
    assert "KEEN_DATABASE_URL" in lines[0] and "Traceback" not in err


def test_debug_shows_the_traceback_of_a_failure() -> None:
    status, _, err = run("status", "--debug", "--database-url", UNREACHABLE)
    assert status == 3
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("keen-sql status: cannot connect")


def test_verbose_shows_yoyos_own_logging(empty_db_url: str) -> None:
    status, _, err = run("migrate", "-v", "--database-url", empty_db_url)
    assert status == 0
    assert "INFO yoyo.migrations: Applying 0001_foundation" in err
    status, _, err = run("status", "--log-level", "warning", "--database-url", empty_db_url)
    assert status == 0 and err == ""


def test_migrate_without_create_privilege_names_it_and_exits_3(
    login_without_privileges: str,
) -> None:
    status, _, err = run("migrate", "--database-url", login_without_privileges)
    assert status == 3
    (line,) = err.strip().splitlines()
    assert "may not create tables in schema public" in line
    assert "GRANT CREATE ON SCHEMA public" in line
    assert "yoyo_lock" not in line


def test_a_failing_migration_is_named_with_its_database_error_and_exits_3(
    empty_db_url: str, login_without_privileges: str
) -> None:
    # The role may create yoyo's tables in public, but not the schema keen (no CREATE on the
    # database): migration 0001 fails, and says so with PostgreSQL's own reason.
    role = str(conninfo_to_dict(login_without_privileges)["user"])
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    status, _, err = run("migrate", "--database-url", login_without_privileges)
    assert status == 3
    (line,) = err.strip().splitlines()
    assert line.startswith("keen-sql migrate: migration 0001_foundation failed")
    assert "permission denied" in line and "(42501)" in line
    with psycopg.connect(empty_db_url) as conn:
        row = conn.execute("SELECT to_regnamespace('keen') IS NULL").fetchone()
    assert row == (True,), "nothing of the failed migration is kept"


def test_migrate_exits_3_when_the_package_carries_no_migration(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS_SOURCE", "package:keen_sql:sql/nothing_here")
    assert cli.main(["migrate", "--database-url", empty_db_url]) == 3
    captured = capsys.readouterr()
    assert "applied" not in captured.out
    assert "no migrations found in the keen_sql package" in captured.err


def test_the_cli_reads_KEEN_DATABASE_URL_then_libpqs_environment(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEEN_DATABASE_URL", empty_db_url)
    assert cli.main(["status"]) == 0
    assert "pending  0001_foundation" in capsys.readouterr().out
    # Without KEEN_DATABASE_URL: libpq's PG* variables, as any libpq client.
    monkeypatch.delenv("KEEN_DATABASE_URL")
    params = conninfo_to_dict(empty_db_url)
    for key, var in [("host", "PGHOST"), ("port", "PGPORT"), ("dbname", "PGDATABASE")]:
        monkeypatch.setenv(var, str(params[key]))
    monkeypatch.setenv("PGUSER", str(params.get("user", "postgres")))
    assert cli.main(["status"]) == 0
    assert "pending  0001_foundation" in capsys.readouterr().out


def test_citus_distribute_on_a_server_without_citus_exits_3_naming_the_extension(
    db_url: str,
) -> None:
    # The normal suite has no Citus (make test-citus runs the command for real): the one-line
    # refusal, and nothing changed.
    status, out, err = run("citus", "distribute", "--database-url", db_url)
    assert status == 3 and out == ""
    assert err.strip().splitlines() == [
        "keen-sql citus: citus distribute: the citus extension is not installed in this"
        " database (docs/scaling.md: CREATE EXTENSION citus on every node first)"
    ]
    with psycopg.connect(db_url) as conn:
        setting = conn.execute(
            "SELECT count(*) FROM pg_db_role_setting AS s JOIN pg_database AS d"
            " ON d.oid = s.setdatabase WHERE d.datname = current_database()"
        ).fetchone()
    assert setting == (0,)
