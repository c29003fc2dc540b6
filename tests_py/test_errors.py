"""SQLSTATE → exception mapping, and the registry docs/errors.md kept in step with the schema."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from keen_dev.databases import CHECKOUT

from keen_sql import errors
from keen_sql.config import Settings
from keen_sql.database import Database, Queries
from tests_py.tenants import register

REGISTRY = CHECKOUT / "docs" / "errors.md"
ROW = re.compile(
    r"^\| `(?P<code>[0-9A-Z]{5})` \| (?P<meaning>[^|]+) \| (?P<raisers>[^|]+) \| `(?P<cls>\w+)` \|$"
)
RAISED_IN_SCHEMA = """
SELECT m[1], p.proname::text
FROM pg_catalog.pg_proc AS p
CROSS JOIN LATERAL regexp_matches(p.prosrc, 'ERRCODE\\s*=\\s*''(KE[0-9]{3})''', 'g') AS m
WHERE p.pronamespace = 'keen'::regnamespace
"""


def registry(path: Path = REGISTRY) -> dict[str, tuple[set[str], str]]:
    """Parse the registry table: code → (raising functions, Python class name)."""
    entries: dict[str, tuple[set[str], str]] = {}
    for line in path.read_text().splitlines():
        m = ROW.match(line.strip())
        if m:
            raisers = set(re.findall(r"`(\w+)`", m["raisers"]))
            entries[m["code"]] = (raisers, m["cls"])
    return entries


@pytest.fixture(scope="module")
def raised_in_schema(db_url: str) -> dict[str, set[str]]:
    """code → functions of schema keen whose body raises it (from the migrated catalog)."""
    found: dict[str, set[str]] = {}
    with psycopg.connect(db_url) as conn:
        for code, function in conn.execute(RAISED_IN_SCHEMA):
            found.setdefault(code, set()).add(function)
    return found


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    with Database(Settings(database_url=db_url, pool_min_size=1, pool_max_size=4)) as database:
        yield database


def test_registry_lists_exactly_the_codes_raised_in_the_schema(
    raised_in_schema: dict[str, set[str]],
) -> None:
    listed = {code for code in registry() if code.startswith("KE")}
    assert listed == set(raised_in_schema), (
        f"docs/errors.md lists {sorted(listed - set(raised_in_schema))} that nothing raises; "
        f"the schema raises {sorted(set(raised_in_schema) - listed)} that it does not list"
    )


def test_registry_lists_exactly_the_functions_raising_each_code(
    raised_in_schema: dict[str, set[str]],
) -> None:
    wrong = []
    for code, (listed, _) in sorted(registry().items()):
        if code.startswith("KE") and listed != raised_in_schema.get(code, set()):
            actual = ", ".join(f"`{f}`" for f in sorted(raised_in_schema.get(code, set())))
            wrong.append(f"{code}: the 'Raised by' cell should read: {actual}")
    assert not wrong, "docs/errors.md is out of date:\n" + "\n".join(wrong)


def test_registry_names_the_class_keen_sql_errors_maps_each_code_to() -> None:
    listed = {code: cls for code, (_, cls) in registry().items()}
    mapped = {code: cls.__name__ for code, cls in errors.ERRORS.items()}
    assert listed == mapped


def test_every_class_carries_its_own_sqlstate_and_is_a_KeenError() -> None:
    assert len(set(errors.ERRORS)) == len(set(errors.ERRORS.values()))
    for code, cls in errors.ERRORS.items():
        assert cls.sqlstate == code
        assert issubclass(cls, errors.KeenError)
        assert cls.__doc__ and cls.__doc__.startswith(code)


@pytest.mark.parametrize("code", [c for c in errors.ERRORS if c.startswith("KE")])
def test_translate_maps_each_contract_code_to_its_class(db_url: str, code: str) -> None:
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(
            f"DO $$ BEGIN RAISE EXCEPTION 'failure %', 42 "
            f"USING ERRCODE = '{code}', DETAIL = 'the detail', HINT = 'the hint'; END $$"
        )
    mapped = errors.translate(caught.value)
    assert type(mapped) is errors.ERRORS[code]
    assert isinstance(mapped, errors.KeenError)
    assert (mapped.sqlstate, mapped.message, mapped.detail, mapped.hint) == (
        code,
        "failure 42",
        "the detail",
        "the hint",
    )
    assert "DETAIL: the detail" in str(mapped) and "HINT: the hint" in str(mapped)


def test_translate_passes_other_sqlstates_through_unchanged(db_url: str) -> None:
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT 1 / 0")
    assert errors.translate(caught.value) is caught.value
    assert isinstance(caught.value, psycopg.errors.DivisionByZero)


def test_translate_passes_client_errors_without_sqlstate_through() -> None:
    exc = psycopg.InterfaceError("connection is closed")
    assert errors.translate(exc) is exc


def test_duplicate_chosen_key_becomes_AlreadyExists_KE009_naming_the_constraint(
    db_url: str,
) -> None:
    # The e-mail is unique across tenants through keen.tenant_lookup (0016): an operator's
    # direct write that reaches its key maps like the functions' own KE009.
    email = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    insert = "INSERT INTO keen.tenant_lookup (kind, value, user_id) VALUES ('email', %s, %s)"
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.errors.UniqueViolation) as caught:
        conn.execute(insert, (email, uuid.uuid4()))
        conn.execute(insert, (email, uuid.uuid4()))
    mapped = errors.translate(caught.value)
    assert isinstance(mapped, errors.AlreadyExists)
    assert (mapped.sqlstate, mapped.constraint) == ("KE009", "tenant_lookup_pkey")


def _buy(q: Queries, intent: str, key: str) -> None:
    q.credits.add_credits(
        amount=Decimal("5"),
        transaction_type="purchase",
        description="top-up",
        idempotency_key=key,
        stripe_payment_intent_id=intent,
    )


def test_payment_intent_reused_by_its_tenant_raises_IdempotencyConflict_KE005(db: Database) -> None:
    intent = f"pi_{uuid.uuid4().hex}"
    user = register(db, "pay")
    with db.tenant(user) as q:
        _buy(q, intent, "order-1")
    with pytest.raises(errors.IdempotencyConflict) as caught, db.tenant(user) as q:
        _buy(q, intent, "order-9")
    assert caught.value.sqlstate == "KE005"
    with db.tenant(user) as q:
        balance = q.credits.credit_balance()
    assert balance is not None and balance.current_balance == 5


def test_payment_intent_of_another_tenant_neither_probes_nor_blocks_the_owner(db: Database) -> None:
    # Unique per tenant: a stranger using the owner's intent first learns nothing and blocks
    # nothing; the owner's own purchase still goes through.
    intent = f"pi_{uuid.uuid4().hex}"
    owner, stranger = register(db, "pay"), register(db, "pay")
    with db.tenant(stranger) as q:
        _buy(q, intent, "order-1")
    with db.tenant(owner) as q:
        _buy(q, intent, "order-1")
        balance = q.credits.credit_balance()
    assert balance is not None and balance.current_balance == 5


def test_domain_error_leaves_tenant_block_as_its_class_chained_to_psycopg(db: Database) -> None:
    with pytest.raises(errors.NoTenantContext) as caught, db.service() as q:
        q.conn.execute("SELECT keen.require_user_id()")
    assert isinstance(caught.value.__cause__, psycopg.Error)
    assert caught.value.__cause__.sqlstate == "KE010"


def test_domain_error_is_raised_at_the_call_site_of_a_bound_query(db: Database) -> None:
    tenant = uuid.uuid4()
    with db.tenant(tenant) as q:
        # A savepoint lets the block handle the error and go on in the same transaction,
        # with the tenant context intact.
        with pytest.raises(errors.NotFound), q.conn.transaction():
            q.users.revoke_token(token_id=uuid.uuid4())
        assert q.conn.execute("SELECT keen.current_user_id()").fetchone() == (tenant,)


def test_statement_timeout_raises_StatementTimeout_57014(db_url: str) -> None:
    settings = Settings(
        database_url=db_url, pool_min_size=1, pool_max_size=1, statement_timeout_ms=50
    )
    with (
        Database(settings) as db,
        pytest.raises(errors.StatementTimeout) as caught,
        db.tenant(uuid.uuid4()) as q,
    ):
        q.conn.execute("SELECT pg_sleep(2)")
    assert caught.value.sqlstate == "57014"


def test_lock_timeout_raises_LockTimeout_55P03(db_url: str) -> None:
    settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=1, lock_timeout_ms=50)
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(db_url) as conn:
            conn.execute("LOCK TABLE keen.auth_tokens IN ACCESS EXCLUSIVE MODE")
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert holding.wait(10)
        with (
            Database(settings) as db,
            pytest.raises(errors.LockTimeout) as caught,
            db.tenant(uuid.uuid4()) as q,
        ):
            q.conn.execute("SELECT id FROM keen.auth_tokens")
        assert caught.value.sqlstate == "55P03"
    finally:
        release.set()
        holder.join()
