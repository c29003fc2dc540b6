"""keen_sql.Database / AsyncDatabase: tenant transactions, pool behaviour, bindings, health."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import keen_queries
import psycopg
import pytest
from keen_dev.databases import CHECKOUT as ROOT
from keen_queries import bound
from psycopg import pq, sql

from keen_sql import bindings
from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database, TransactionAborted
from keen_sql.errors import NoTenantContext, NotFound
from keen_sql.security import hash_token
from tests_py.tenants import create_token, register
from tests_py.test_isolation import LEFTOVER

API_DOC = ROOT / "docs" / "python_api.md"
TOKEN_ARGS: dict[str, Any] = {
    "token_type": "api_key",
    "token_name": None,
    "scopes": [],
    "expires_at": None,
    "rate_limit_per_hour": 10,
    "created_ip": None,
    "user_agent": None,
}


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, **{"pool_min_size": 1, "pool_max_size": 2, **overrides})


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    with Database(settings_for(db_url)) as database:
        yield database


@pytest.fixture(scope="module")
def user_id(db: Database) -> uuid.UUID:
    return register(db, "db", timezone="Europe/Paris")


def _token_count(db: Database, user_id: uuid.UUID) -> int:
    with db.tenant(user_id) as q:
        return len(q.users.list_auth_tokens())


def test_tenant_runs_as_keen_app_with_tenant_and_timeouts_local_to_the_transaction(
    db: Database, user_id: uuid.UUID
) -> None:
    with db.tenant(user_id) as q:
        row = q.conn.execute(
            "SELECT current_user::text, keen.current_user_id(),"
            " current_setting('statement_timeout'), current_setting('lock_timeout')"
        ).fetchone()
        assert q.user_id == user_id
    assert row == ("keen_app", user_id, "30s", "10s")
    with db.pool.connection() as conn:
        assert conn.execute(LEFTOVER).fetchone() == ("", "none", True)


def test_begin_role_and_tenant_travel_in_one_round_trip(db_url: str, tmp_path: Path) -> None:
    settings = settings_for(db_url, pool_min_size=1, pool_max_size=1, pool_check=False)
    trace = tmp_path / "libpq.trace"
    with Database(settings) as one, trace.open("w") as out:
        conn = one.pool.getconn()
        one.pool.putconn(conn)
        # The pool resets a returned connection in a worker: trace once that is done.
        deadline = time.monotonic() + 5
        while one.pool.get_stats().get("pool_available", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        tenant = uuid.uuid4()
        with one.tenant(tenant) as q:
            q.conn.execute("SELECT 'block starts'")
        conn.pgconn.untrace()
    # Frontend messages (F), tab-separated: direction, length, type, contents.
    sent = [line.split("\t") for line in trace.read_text().splitlines() if line.startswith("F")]
    # A round trip ends with a simple Query or with the Sync after Parse/Bind/Execute.
    trips = [
        (m[2].strip(), m[3] if len(m) > 3 else "")
        for m in sent
        if m[2].strip() in ("Query", "Sync")
    ]
    # After COMMIT only the pool's reset of the returned connection may follow.
    commit = next(i for i, (_, text) in enumerate(trips) if text == ' "COMMIT"')
    assert all(
        text in (' "DISCARD ALL"', ' "DEALLOCATE ALL"', "") for _, text in trips[commit + 1 :]
    ), trips
    trips = trips[: commit + 1]
    # BEGIN and the context pipelined (one Sync), the block's statement, COMMIT: nothing else.
    assert [kind for kind, _ in trips] == ["Sync", "Query", "Query"]
    _, block, end = (text for _, text in trips)
    assert "block starts" in block and end == ' "COMMIT"'
    # Before the Sync: BEGIN, the role and timeouts as bound parameters, and the tenant's
    # SET LOCAL (the form Citus propagates; SET takes no parameter), whose only value is
    # the parsed UUID as a quoted literal.
    parses = [
        m[3]
        for m in sent[: next(i for i, m in enumerate(sent) if m[2].strip() == "Sync")]
        if m[2].strip() == "Parse"
    ]
    assert len(parses) == 3
    assert '"BEGIN"' in parses[0]
    assert "set_config('role', $1, true)" in parses[1] and "keen_app" not in parses[1]
    assert f"\"SET LOCAL app.current_user_id = '{tenant}'\"" in parses[2]


def test_a_role_name_that_is_not_a_plain_identifier_is_refused(db_url: str) -> None:
    with pytest.raises(ValueError):
        Database(settings_for(db_url, app_role="keen_app', true); DROP TABLE x; --"))


def test_tenant_commits_when_the_block_ends(db: Database, user_id: uuid.UUID) -> None:
    before = _token_count(db, user_id)
    with db.tenant(user_id) as q:
        create_token(q)
    assert _token_count(db, user_id) == before + 1


def test_tenant_rolls_back_when_the_block_raises(db: Database, user_id: uuid.UUID) -> None:
    before = _token_count(db, user_id)
    with pytest.raises(RuntimeError), db.tenant(user_id) as q:
        create_token(q)
        raise RuntimeError("the service failed after writing")
    assert _token_count(db, user_id) == before


def test_swallowed_database_error_rolls_back_and_raises_TransactionAborted(
    db: Database, user_id: uuid.UUID
) -> None:
    before = _token_count(db, user_id)
    with pytest.raises(TransactionAborted), db.tenant(user_id) as q:
        create_token(q)
        # Carrying on after a failed statement must not look like success.
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            q.conn.execute("SELECT 1 / 0")
    assert _token_count(db, user_id) == before


def test_service_transaction_has_no_tenant_and_tenant_functions_raise_KE010(db: Database) -> None:
    with db.service() as q:
        assert q.user_id is None
        assert q.conn.execute("SELECT keen.current_user_id(), current_user::text").fetchone() == (
            None,
            "keen_app",
        )
    with pytest.raises(NoTenantContext), db.service() as q:
        q.users.revoke_token(token_id=uuid.uuid4())


def test_a_session_level_leftover_cannot_reach_the_next_transaction(
    db_url: str, user_id: uuid.UUID
) -> None:
    # Simulate a bug that sets a tenant at session level on a pooled connection: the
    # transaction-local settings of the next transaction override it, both ways.
    with Database(settings_for(db_url, pool_min_size=1, pool_max_size=1)) as one:
        with one.pool.connection() as conn:
            conn.execute(
                "SELECT set_config('app.current_user_id', %s, false)", (str(uuid.uuid4()),)
            )
            assert conn.execute(LEFTOVER).fetchone() != ("", "none", True)  # the probe sees it
        with one.service() as q:
            assert q.conn.execute("SELECT keen.current_user_id()").fetchone() == (None,)
        with one.tenant(user_id) as q:
            assert q.conn.execute("SELECT keen.current_user_id()").fetchone() == (user_id,)


def test_tenant_refuses_an_id_that_is_not_a_uuid_before_touching_the_database(
    db: Database,
) -> None:
    with pytest.raises(ValueError):
        db.tenant("' OR true --")


def test_domain_error_at_the_call_site_is_its_keen_sql_class(db: Database) -> None:
    with pytest.raises(NotFound) as caught, db.tenant(uuid.uuid4()) as q:
        q.users.revoke_token(token_id=uuid.uuid4())
    assert caught.value.sqlstate == "KE006"


def test_call_binds_any_function_taking_the_connection_first(
    db: Database, user_id: uuid.UUID
) -> None:
    with db.tenant(user_id) as q:
        rows = q.call(keen_queries.users.list_auth_tokens)
        assert isinstance(rows, list)
        with pytest.raises(NotFound), q.conn.transaction():
            q.call(keen_queries.users.revoke_token, token_id=uuid.uuid4())


def test_prepared_statements_follow_the_prepare_setting(db_url: str) -> None:
    with Database(settings_for(db_url)) as on, on.service() as q:
        assert q.conn.prepare_threshold == 5
    with Database(settings_for(db_url, prepare=False)) as off, off.service() as q:
        assert q.conn.prepare_threshold is None


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEN_DATABASE_URL", "postgresql://svc@db.example/keen")
    monkeypatch.setenv("KEEN_PREPARE", "0")
    monkeypatch.setenv("KEEN_POOL_MAX_SIZE", "7")
    monkeypatch.setenv("KEEN_STATEMENT_TIMEOUT_MS", "1500")
    s = Settings.from_env()
    assert (s.database_url, s.prepare, s.pool_max_size, s.statement_timeout_ms) == (
        "postgresql://svc@db.example/keen",
        False,
        7,
        1500,
    )


def test_health_reports_the_server_and_the_pool(db: Database) -> None:
    health = db.health()
    assert health.ok and health.error is None
    assert health.server_version and health.server_version.startswith("15")
    assert health.in_recovery is False
    assert health.pool_size >= 1 and health.latency_ms >= 0


def test_health_reports_an_unreachable_server_without_raising() -> None:
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=1",
        pool_min_size=0,
        pool_max_size=1,
    )
    with Database(settings) as unreachable:
        health = unreachable.health(timeout=0.5)
    assert not health.ok
    assert health.error and "PoolTimeout" in health.error


def test_async_tenant_commits_rolls_back_and_maps_errors(db_url: str, user_id: uuid.UUID) -> None:
    async def scenario() -> tuple[Any, int, int]:
        async with AsyncDatabase(settings_for(db_url)) as adb:
            async with adb.tenant(user_id) as q:
                cur = await q.conn.execute("SELECT current_user::text, keen.current_user_id()")
                who = await cur.fetchone()
                before = len(await q.users.list_auth_tokens())
            with pytest.raises(RuntimeError):
                async with adb.tenant(user_id) as q:
                    await q.users.create_auth_token(**TOKEN_ARGS, token_hash=hash_token("x"))
                    raise RuntimeError
            with pytest.raises(NotFound):
                async with adb.tenant(user_id) as q:
                    await q.users.revoke_token(token_id=uuid.uuid4())
            async with adb.tenant(user_id) as q:
                after = len([t async for t in q.users.list_auth_tokens_iter()])
            assert (await adb.health()).ok
            return who, before, after

    who, before, after = asyncio.run(scenario())
    assert who == ("keen_app", user_id)
    assert before == after


def _generated_functions() -> list[tuple[str, Any]]:
    """(module, function) of every public function the plugin wrote into keen_queries."""
    out = []
    for info in pkgutil.iter_modules(keen_queries.__path__):
        module = importlib.import_module(f"keen_queries.{info.name}")
        for name, fn in sorted(vars(module).items()):
            public = not name.startswith("_") and inspect.isfunction(fn)
            if public and fn.__module__ == module.__name__:
                out.append((info.name, fn))
    return out


def test_every_generated_query_is_bound_by_the_generated_classes_keen_sql_uses() -> None:
    # keen_sql lists no query: Queries is the plugin's bound.Queries with keen's error hook.
    assert issubclass(bindings.Queries, bound.Queries)
    assert issubclass(bindings.AsyncQueries, bound.AsyncQueries)
    unbound = []
    for module, fn in _generated_functions():
        name = fn.__name__
        if module in ("models", "bound") or name.endswith("_params"):
            continue
        is_async = name.endswith("_async")
        cls = getattr(
            importlib.import_module(f"keen_queries.{module}"),
            f"{'Async' if is_async else ''}{module.title()}Queries",
        )
        if not hasattr(cls, name.removesuffix("_async")) or not hasattr(bindings.Queries, module):
            unbound.append(f"{module}.{name}")
    assert not unbound


def test_no_generated_function_has_a_p_parameter() -> None:
    named = [
        f"{module}.{fn.__name__}({param})"
        for module, fn in _generated_functions()
        for param in inspect.signature(fn).parameters
        if param.startswith("p_")
    ]
    assert not named
    assert len(_generated_functions()) > 100


def _doc_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(), re.S)
    return str(blocks[0])


def test_the_documented_usage_example_type_checks_with_mypy_strict(tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(_doc_example())
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(example)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": str(ROOT / "generated")},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_documented_usage_example_runs_with_the_promised_types(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_doc_example(), str(API_DOC), "exec"), namespace)
    namespace["example"](settings_for(db_url))
    printed = capsys.readouterr().out.split("\n")
    balance, offset, token = printed[0].split(" ")
    assert Decimal(balance) == Decimal("25.0000") and offset == "0:00:00" and len(token) == 43
    assert printed[1].startswith("KE001 insufficient credits")
    with Database(settings_for(db_url)) as db, db.service() as q:
        found = q.users.login_lookup(login="ada")
        assert found is not None and isinstance(found.user_id, uuid.UUID)
        with db.tenant(found.user_id) as t:
            entry = t.credits.list_credit_transactions(limit=1)
    if entry:
        assert isinstance(entry[0].amount, Decimal)
        assert isinstance(entry[0].created_at, datetime) and entry[0].created_at.tzinfo


def test_a_noinherit_service_login_acts_only_as_keen_app_never_as_keen_owner(db_url: str) -> None:
    login = f"keen_test_svc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOINHERIT IN ROLE keen_app").format(sql.Identifier(login))
        )
    try:
        url = db_url.replace("postgres@", f"{login}@", 1)
        with Database(settings_for(url)) as svc:
            with svc.service() as q:
                assert q.conn.execute("SELECT current_user::text").fetchone() == ("keen_app",)
            for role in ("keen_owner", "postgres"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege), svc.service() as q:
                    q.conn.execute("SELECT set_config('role', %s, true)", (role,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege), svc.service() as q:
                q.conn.execute("SELECT password_hash FROM keen.users")
            # A NOINHERIT login holds no privileges of its own: a statement that escapes the
            # tenant transaction (the block committed it itself) fails instead of running.
            with pytest.raises(psycopg.errors.InsufficientPrivilege), svc.service() as q:
                q.conn.commit()
                q.conn.execute("SELECT count(*) FROM keen.auth_tokens")
    finally:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
