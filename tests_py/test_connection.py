"""Connection rules and pool settings of keen_sql as a library.

`Database(x)` takes a libpq URL or key=value conninfo (or `Settings`); with none it uses
KEEN_DATABASE_URL, else libpq's own environment. The pool names itself to the server
(application_name), bounds its queue (max_waiting) and logs when it cannot reconnect.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import TooManyRequests

from keen_sql import Database, Settings
from keen_sql.context import TenantContext

WHO = "SELECT current_database(), current_setting('application_name')"


def _database_name(db: Database) -> str:
    with db.pool.connection() as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def test_database_takes_a_url_or_a_key_value_conninfo(db_url: str) -> None:
    name = conninfo_to_dict(db_url)["dbname"]
    with Database(db_url) as db:
        assert _database_name(db) == name
    with Database(make_conninfo("", **conninfo_to_dict(db_url))) as db:
        assert _database_name(db) == name


def test_database_without_conninfo_uses_KEEN_DATABASE_URL_then_libpq_environment(
    db_url: str, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = conninfo_to_dict(db_url)
    for key, var in [("host", "PGHOST"), ("port", "PGPORT"), ("dbname", "PGDATABASE")]:
        monkeypatch.setenv(var, str(params[key]))
    monkeypatch.setenv("PGUSER", str(params.get("user", "postgres")))
    # KEEN_DATABASE_URL first …
    monkeypatch.setenv("KEEN_DATABASE_URL", empty_db_url)
    with Database() as db:
        assert _database_name(db) == conninfo_to_dict(empty_db_url)["dbname"]
    # … else libpq's PG* variables: no default of the library's own.
    monkeypatch.delenv("KEEN_DATABASE_URL")
    assert Settings.from_env().database_url == ""
    with Database() as db:
        assert _database_name(db) == params["dbname"]


def test_pool_connections_name_the_application_unless_the_conninfo_does(db_url: str) -> None:
    with Database(db_url) as db, db.pool.connection() as conn:
        assert conn.execute(WHO).fetchone() == (conninfo_to_dict(db_url)["dbname"], "keen-sql")
    named = make_conninfo(db_url, application_name="billing")
    with Database(named) as db, db.pool.connection() as conn:
        row = conn.execute(WHO).fetchone()
    assert row is not None and row[1] == "billing"


def test_pool_queue_is_bounded_and_refuses_at_once_beyond_max_waiting(db_url: str) -> None:
    settings = Settings(db_url, pool_min_size=1, pool_max_size=1, pool_max_waiting=1)
    with Database(settings) as db:
        held = db.pool.getconn()
        served: list[bool] = []

        def wait() -> None:
            with db.pool.connection(timeout=60):
                served.append(True)

        # The one connection is taken; one request may wait for it …
        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        deadline = time.monotonic() + 30
        while db.pool.get_stats().get("requests_waiting", 0) < 1:
            assert time.monotonic() < deadline, "the first request never queued"
            time.sleep(0.01)
        # … the next is refused at once instead of piling up …
        started = time.monotonic()
        with pytest.raises(TooManyRequests):
            db.pool.getconn(timeout=30)
        assert time.monotonic() - started < 5.0
        # … and the one that waited is served when the connection comes back.
        db.pool.putconn(held)
        waiter.join(timeout=60)
    assert served == [True]


def test_pool_logs_an_error_when_it_cannot_reconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="keen_sql.database")
    settings = Settings(
        "host=/nonexistent/keen-sql-test port=5 dbname=x connect_timeout=1",
        pool_min_size=1,
        pool_reconnect_timeout=0.5,
    )
    db = Database(settings)
    try:
        deadline = time.monotonic() + 20
        while not any(r.name == "keen_sql.database" for r in caplog.records):
            assert time.monotonic() < deadline, "reconnect_failed was never logged"
            time.sleep(0.1)
    finally:
        db.pool.close(timeout=1)
    (record,) = [r for r in caplog.records if r.name == "keen_sql.database"]
    assert record.levelname == "ERROR"
    assert "could not connect to the database" in record.getMessage()


def test_one_context_builder_refuses_a_bad_role_or_tenant_before_any_sql() -> None:
    ctx = TenantContext.from_settings(Settings("", statement_timeout_ms=5, lock_timeout_ms=7))
    user = uuid.uuid4()
    assert ctx.params() == ("keen_app", "5ms", "7ms")
    (first, params), (tenant, none) = ctx.statements(user)
    assert "set_config('role', %s, true)" in first and params == ctx.params() and none == ()
    assert tenant == ctx.tenant(user)
    assert ctx.tenant(user).as_string() == f"SET LOCAL app.current_user_id = '{user}'"
    assert ctx.tenant(str(user).upper()) == ctx.tenant(user)
    # No tenant: fail closed.
    assert ctx.tenant(None).as_string() == "SET LOCAL app.current_user_id = ''"
    with pytest.raises(ValueError):
        ctx.statements("1'; DROP TABLE keen.users; --")
    with pytest.raises(ValueError, match="not a plain role name"):
        TenantContext(role="keen_app'; --")
