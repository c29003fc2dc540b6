"""Accounts through the Python API: every flow of issue 20, its errors, the audit trail, a
real race for one recovery code, erasure by a real service login, and a pg_dump that holds
no plaintext token, code or secret."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from argon2 import PasswordHasher
from keen_queries.models import UserAuditLog
from psycopg import sql

from keen_sql import security
from keen_sql.backup import PG_BIN
from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database
from keen_sql.errors import (
    AccountNotActive,
    AlreadyExists,
    InvalidArgument,
    InvalidStateTransition,
    NoTenantContext,
    NotFound,
)
from tests_py.tenants import register, tenant_lookup_disagreements

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
IP = ipaddress.ip_address("198.51.100.23")
KEY = b"test key: the service's, never the database's"


def seal(secret: str, key: bytes = KEY, key_id: str = "k1") -> str:
    """A test-only stand-in for the service's AEAD: "<key id>:<base64(nonce + ciphertext)>"."""
    nonce = os.urandom(12)
    data = secret.encode()
    stream = hashlib.shake_256(key + nonce).digest(len(data))
    return (
        f"{key_id}:"
        + base64.b64encode(nonce + bytes(a ^ b for a, b in zip(data, stream, strict=True))).decode()
    )


def unseal(envelope: str, key: bytes = KEY) -> str:
    """Open what `seal` made."""
    raw = base64.b64decode(envelope.split(":", 1)[1])
    nonce, body = raw[:12], raw[12:]
    stream = hashlib.shake_256(key + nonce).digest(len(body))
    return bytes(a ^ b for a, b in zip(body, stream, strict=True)).decode()


def recovery_codes(count: int = 8) -> list[str]:
    """Codes a user writes down: 80 random bits each."""
    return [secrets.token_hex(10) for _ in range(count)]


def in_a_day() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    with Database(Settings(database_url=db_url, pool_min_size=1, pool_max_size=4)) as database:
        yield database


@pytest.fixture(scope="module")
def operator(db_url: str) -> Iterator[Database]:
    """Operators and billing: an operator login acting as keen_owner (not granted to keen_app)."""
    with Database(
        Settings(database_url=db_url, app_role="keen_owner", pool_max_size=2)
    ) as database:
        yield database


@pytest.fixture
def user_id(db: Database) -> uuid.UUID:
    return register(db, "acct")


@pytest.fixture(autouse=True)
def lookup_stays_consistent(db_url: str) -> Iterator[None]:
    """After every flow: keen.verify_tenant_lookup() is empty (each value a live user or token
    holds is in keen.tenant_lookup under that user, and nothing else is)."""
    yield
    assert tenant_lookup_disagreements(db_url) == []


def test_two_sign_ups_with_one_e_mail_at_once_one_wins_the_other_gets_KE009(db: Database) -> None:
    # Real threads, each in its own transaction, both past their checks before either commits:
    # the lookup's primary key decides (the second insert waits for the first's commit).
    tag = uuid.uuid4().hex[:10]
    barrier = threading.Barrier(2)
    started = threading.Event()

    def sign_up(n: int) -> uuid.UUID | AlreadyExists:
        try:
            with db.service() as q:
                barrier.wait()
                if n == 1:
                    started.wait(5)  # the other transaction has claimed the e-mail, uncommitted
                    time.sleep(0.2)
                row = q.users.register_user(
                    email=f"Race-{tag}@Example.com" if n else f"race-{tag}@example.com",
                    username=f"race{n}{tag}",
                    password_hash="x" * 40,
                    timezone="UTC",
                )
                if n == 0:
                    started.set()
                    time.sleep(0.5)  # commit late: the other one waits on the key meanwhile
                return row
        except AlreadyExists as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(sign_up, range(2))
    assert isinstance(first, uuid.UUID), first
    assert isinstance(second, AlreadyExists), second
    assert (second.sqlstate, second.detail) == ("KE009", "users_lower_email_key")
    with db.service() as q:
        found = q.users.login_lookup(login=f"RACE-{tag}@example.COM")
    assert found is not None and found.user_id == first


def test_many_sign_ups_racing_for_one_username_exactly_one_wins(db: Database) -> None:
    tag = uuid.uuid4().hex[:10]
    racers = 6
    barrier = threading.Barrier(racers)

    def sign_up(n: int) -> str:
        try:
            barrier.wait()
            with db.service() as q:
                q.users.register_user(
                    email=f"u{n}-{tag}@example.com",
                    username=f"Same{tag}".upper() if n % 2 else f"same{tag}",
                    password_hash="x" * 40,
                    timezone="UTC",
                )
            return "won"
        except AlreadyExists as exc:
            assert exc.detail == "users_lower_username_key"
            return "KE009"

    with ThreadPoolExecutor(racers) as pool:
        outcomes = sorted(pool.map(sign_up, range(racers)))
    assert outcomes == ["KE009"] * (racers - 1) + ["won"]


@pytest.fixture
def service_login(fresh_db_url: str) -> Iterator[str]:
    """A real service login (NOINHERIT member of keen_app, not a superuser) on `fresh_db_url`;
    yields its URL."""
    login = f"keen_test_acct_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_db_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOINHERIT IN ROLE keen_app").format(sql.Identifier(login))
        )
    try:
        yield fresh_db_url.replace("postgres@", f"{login}@", 1)
    finally:
        with psycopg.connect(fresh_db_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_update_profile_changes_the_fields_given_and_audits_them_with_the_client_ip(
    db: Database, user_id: uuid.UUID
) -> None:
    with db.tenant(user_id) as q:
        q.users.set_client_ip(ip=IP)
        q.users.update_profile(
            display_name="Ada L.",
            avatar_url="https://img.example/ada.png",
            timezone="Europe/London",
            preferences={"theme": "dark"},
        )
    with db.tenant(user_id) as q:
        q.users.update_profile(display_name=None, avatar_url=None, timezone=None, preferences=None)
        me = q.users.current_user()
        trail = q.users.list_user_audit_log(before_id=None, max_rows=10)
    assert me is not None
    assert (me.display_name, me.avatar_url, me.timezone, me.preferences) == (
        "Ada L.",
        "https://img.example/ada.png",
        "Europe/London",
        {"theme": "dark"},
    )
    assert [row.action for row in trail] == ["update_profile", "register_user"]
    change = trail[0]
    assert (change.actor, change.ip, change.user_id) == ("user", IP, user_id)
    assert change.changes == {
        "display_name": {"old": None, "new": "Ada L."},
        "avatar_url": {"old": None, "new": "https://img.example/ada.png"},
        "timezone": {"old": "UTC", "new": "Europe/London"},
        "preferences": {"old": {}, "new": {"theme": "dark"}},
    }
    assert isinstance(change.id, int) and change.created_at.tzinfo is not None
    with db.tenant(user_id) as q:
        assert q.users.list_user_audit_log(before_id=None, max_rows=-1) == []
        assert q.users.list_user_audit_log(before_id=change.id, max_rows=10) == trail[1:]


def test_update_profile_with_an_http_avatar_raises_KE013_and_writes_nothing(
    db: Database, user_id: uuid.UUID
) -> None:
    with pytest.raises(InvalidArgument) as caught, db.tenant(user_id) as q:
        q.users.update_profile(
            display_name="Kept?",
            avatar_url="http://img.example/a.png",
            timezone=None,
            preferences=None,
        )
    assert caught.value.sqlstate == "KE013" and "avatar URL" in caught.value.message
    with db.tenant(user_id) as q:
        me = q.users.current_user()
        assert me is not None and me.display_name is None
        assert len(q.users.list_user_audit_log(before_id=None, max_rows=10)) == 1


def test_account_functions_without_tenant_raise_KE010(db: Database) -> None:
    with pytest.raises(NoTenantContext), db.service() as q:
        q.users.update_profile(display_name="x", avatar_url=None, timezone=None, preferences=None)
    with pytest.raises(NoTenantContext), db.service() as q:
        q.users.close_account()


def test_change_password_revokes_every_token_and_the_new_password_logs_in(
    db: Database, user_id: uuid.UUID
) -> None:
    with db.tenant(user_id) as q:
        me = q.users.current_user()
        assert me is not None
        issued = security.issue_token(q, "api_key")
        row = q.users.change_password(
            password_hash=security.hash_password("new secret", FAST), revoke_tokens=None
        )
    assert row == 1
    with db.service() as q:
        assert security.authenticate(q, issued.token) is None
    result = security.login(db, me.username, "new secret", ip=IP, hasher=FAST)
    assert result is not None and result.user_id == user_id


def test_email_verification_confirms_once_without_tenant(db: Database, user_id: uuid.UUID) -> None:
    token = security.new_token()
    with db.tenant(user_id) as q:
        q.users.start_email_verification(
            token_hash=security.hash_token(token), expires_at=in_a_day()
        )
    with db.service() as q:
        confirmed = q.users.confirm_email(token_hash=security.hash_token(token))
    assert confirmed == user_id
    with pytest.raises(NotFound), db.service() as q:
        q.users.confirm_email(token_hash=security.hash_token(token))
    with db.tenant(user_id) as q:
        me = q.users.current_user()
    assert me is not None and me.email_verified
    with pytest.raises(InvalidStateTransition), db.tenant(user_id) as q:
        q.users.start_email_verification(
            token_hash=security.hash_token("again"), expires_at=in_a_day()
        )


def test_change_email_to_a_taken_address_raises_KE009_and_a_free_one_needs_verification(
    db: Database, user_id: uuid.UUID
) -> None:
    other = register(db, "taken")
    with db.tenant(other) as q:
        me = q.users.current_user()
        assert me is not None
        taken = me.email.upper()
    with pytest.raises(AlreadyExists), db.tenant(user_id) as q:
        q.users.change_email(
            email=taken, token_hash=security.hash_token("t"), expires_at=in_a_day()
        )
    new_email = f"moved-{uuid.uuid4().hex[:8]}@example.org"
    with db.tenant(user_id) as q:
        q.users.change_email(
            email=new_email, token_hash=security.hash_token("t2"), expires_at=in_a_day()
        )
        me = q.users.current_user()
    assert me is not None and (me.email, me.email_verified) == (new_email, False)
    with db.service() as q:
        found = q.users.login_lookup(login=new_email)
    assert found is not None and found.user_id == user_id


def test_mfa_enrol_enable_and_disable_keep_the_secret_encrypted_by_the_service(
    db: Database, user_id: uuid.UUID
) -> None:
    totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    codes = recovery_codes()
    with pytest.raises(InvalidArgument), db.tenant(user_id) as q:
        q.users.enroll_mfa(
            secret_ciphertext=totp_secret,
            recovery_code_hashes=[security.hash_token(c) for c in codes],
        )
    with pytest.raises(InvalidArgument), db.tenant(user_id) as q:
        q.users.enroll_mfa(secret_ciphertext=seal(totp_secret), recovery_code_hashes=codes)
    with db.tenant(user_id) as q:
        q.users.enroll_mfa(
            secret_ciphertext=seal(totp_secret),
            recovery_code_hashes=[security.hash_token(c) for c in codes],
        )
        q.users.enable_mfa()
        stored = q.users.get_mfa_secret()
    with pytest.raises(InvalidStateTransition), db.tenant(user_id) as q:
        q.users.enable_mfa()
    assert stored is not None
    assert unseal(stored) == totp_secret
    with db.tenant(user_id) as q:
        q.users.disable_mfa()
        gone = q.users.get_mfa_secret()
        current = q.users.current_user()
    assert gone is None
    assert current is not None and not current.mfa_enabled


def test_one_recovery_code_raced_by_two_transactions_is_spent_exactly_once(
    db: Database, user_id: uuid.UUID
) -> None:
    codes = recovery_codes(3)
    with db.tenant(user_id) as q:
        q.users.enroll_mfa(
            secret_ciphertext=seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
            recovery_code_hashes=[security.hash_token(c) for c in codes],
        )
        q.users.enable_mfa()
    barrier = threading.Barrier(2)

    def spend(_: int) -> int | NotFound:
        try:
            with db.tenant(user_id) as q:
                barrier.wait()  # both transactions are open before either spends the code
                row = q.users.use_recovery_code(code_hash=security.hash_token(codes[0]))
                return row
        except NotFound as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(spend, range(2)))
    assert sorted(map(type, outcomes), key=str) == sorted([int, NotFound], key=str), outcomes
    assert 2 in outcomes
    with db.tenant(user_id) as q:
        left = q.users.use_recovery_code(code_hash=security.hash_token(codes[1]))
        trail = q.users.list_user_audit_log(before_id=None, max_rows=50)
    assert left == 1
    assert [r.action for r in trail].count("use_recovery_code") == 2
    assert all(security.hash_token(c) not in str(r.changes) for r in trail for c in codes)


def test_close_account_racing_a_new_hold_waits_for_it_and_refuses_with_KE007(
    db: Database, user_id: uuid.UUID
) -> None:
    with db.tenant(user_id) as q:
        q.credits.add_credits(
            amount=Decimal("10"),
            transaction_type="purchase",
            description=None,
            idempotency_key=None,
            stripe_payment_intent_id=None,
            metadata=None,
        )
    barrier = threading.Barrier(2)

    def hold(_: int) -> str:
        with db.tenant(user_id) as q:
            q.credits.hold_credits(
                session_id=None, amount=Decimal("1"), idempotency_key=None, expires_in=None
            )
            barrier.wait()
            time.sleep(0.3)  # the close below runs meanwhile, against the uncommitted hold
        return "held"

    def close(_: int) -> str:
        barrier.wait()
        try:
            with db.tenant(user_id) as q:
                q.users.close_account()
        except InvalidStateTransition:
            return "refused"
        return "closed"

    with ThreadPoolExecutor(2) as pool:
        held, closed = pool.submit(hold, 0), pool.submit(close, 0)
        assert (held.result(), closed.result()) == ("held", "refused")


def test_operators_suspend_reactivate_and_set_roles_and_billing_sets_the_subscription(
    db: Database, operator: Database, user_id: uuid.UUID
) -> None:
    with db.tenant(user_id) as q:
        issued = security.issue_token(q, "api_key")
    with operator.service() as q:
        q.users.suspend_user(user_id=user_id, reason="chargeback under review")
    with pytest.raises(AccountNotActive), db.tenant(user_id) as q:
        q.users.update_profile(display_name="x", avatar_url=None, timezone=None, preferences=None)
    with db.service() as q:
        assert security.authenticate(q, issued.token) is None
    with pytest.raises(InvalidStateTransition), operator.service() as q:
        q.users.suspend_user(user_id=user_id, reason="twice")
    with operator.service() as q:
        q.users.reactivate_user(user_id=user_id)
        q.users.set_user_role(user_id=user_id, role="admin")
        q.users.set_billing(
            user_id=user_id,
            billing_customer_id=f"cus_{user_id.hex}",
            subscription_tier="team",
            subscription_status=None,
        )
    other = register(db, "billed")
    with pytest.raises(AlreadyExists), operator.service() as q:
        q.users.set_billing(
            user_id=other,
            billing_customer_id=f"cus_{user_id.hex}",
            subscription_tier=None,
            subscription_status=None,
        )
    with pytest.raises(NotFound), operator.service() as q:
        q.users.reactivate_user(user_id=uuid.uuid4())
    with db.tenant(user_id) as q:
        me = q.users.current_user()
        trail = q.users.list_user_audit_log(before_id=None, max_rows=10)
    assert me is not None
    assert (me.account_status, me.is_admin, me.subscription_tier, me.billing_customer_id) == (
        "active",
        True,
        "team",
        f"cus_{user_id.hex}",
    )
    assert [(r.actor, r.action) for r in trail[:4]] == [
        ("billing", "set_billing"),
        ("operator", "set_user_role"),
        ("operator", "reactivate_user"),
        ("operator", "suspend_user"),
    ]
    suspension = trail[3].changes
    assert isinstance(suspension, dict)
    assert suspension["suspended_reason"] == {"old": None, "new": "chargeback under review"}


def test_keen_app_cannot_call_the_operator_and_billing_functions(
    db: Database, user_id: uuid.UUID
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.tenant(user_id) as q:
        q.users.suspend_user(user_id=user_id, reason="self")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.tenant(user_id) as q:
        q.users.set_billing(
            user_id=user_id,
            billing_customer_id=None,
            subscription_tier="enterprise",
            subscription_status=None,
        )


def _dump(url: str) -> str:
    """The data of the whole database as pg_dump writes it (a superuser reads every row)."""
    done = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--data-only", "--dbname", url],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def test_close_account_by_a_service_login_erases_personal_data_and_keeps_the_ledger_verifiable(
    fresh_db_url: str, service_login: str
) -> None:
    tag = f"erase{uuid.uuid4().hex[:8]}"
    email, avatar, agent, customer = (
        f"{tag}@example.com",
        f"https://img.example/{tag}.png",
        f"Agent-{tag}",
        f"cus_{tag}",
    )
    token, code = security.new_token(), secrets.token_hex(10)
    with Database(Settings(database_url=service_login, pool_max_size=2)) as svc:
        with svc.service() as q:
            row = q.users.register_user(
                email=email,
                username=tag,
                password_hash=security.hash_password("pw", FAST),
                display_name="Erin Erase",
                timezone="UTC",
            )
        user_id = row
        with (
            Database(
                Settings(database_url=fresh_db_url, app_role="keen_owner", pool_max_size=1)
            ) as ops,
            ops.service() as q,
        ):
            q.users.set_billing(
                user_id=user_id,
                billing_customer_id=customer,
                subscription_tier=None,
                subscription_status=None,
            )
        with svc.tenant(user_id) as q:
            q.users.set_client_ip(ip=IP)
            q.users.update_profile(
                display_name=None, avatar_url=avatar, timezone=None, preferences={"nick": tag}
            )
            security.issue_token(q, "api_key", ip=IP, user_agent=agent)
            q.users.enroll_mfa(
                secret_ciphertext=seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
                recovery_code_hashes=[security.hash_token(code)],
            )
            q.users.start_email_verification(
                token_hash=security.hash_token(token), expires_at=in_a_day()
            )
            q.credits.add_credits(
                amount=Decimal("20"),
                transaction_type="purchase",
                description="top-up",
                idempotency_key=None,
                stripe_payment_intent_id=None,
                metadata=None,
            )
            q.credits.deduct_credits(
                amount=Decimal("7.25"),
                session_id=None,
                description="run",
                idempotency_key=None,
            )
            q.sessions.open_connection(
                connection_id=f"ws-{tag}",
                client_ip=IP,
                user_agent=agent,
                client_type="web",
                session_id=None,
                subscribed_events=[],
                session_filters=None,
            )
        before = _dump(fresh_db_url)
        with svc.tenant(user_id) as q:
            q.users.close_account()
        with pytest.raises(AccountNotActive), svc.tenant(user_id) as q:
            q.users.close_account()
        after = _dump(fresh_db_url)
        with svc.service() as q:
            again = q.users.register_user(
                email=email,
                username=tag,
                password_hash="y" * 40,
                display_name=None,
                timezone="UTC",
            )
    personal = [
        email,
        tag,
        "Erin Erase",
        avatar,
        agent,
        customer,
        str(IP),
        security.hash_token(code),
        security.hash_token(token),
    ]
    assert all(value.lower() in before.lower() for value in personal), (
        "the dump before closing holds them all"
    )
    left = [value for value in personal if value.lower() in after.lower()]
    assert not left, f"personal data left after closing: {left}"
    assert again != user_id, "the e-mail and username are free again"
    with psycopg.connect(fresh_db_url) as admin:
        assert admin.execute("SELECT * FROM keen.verify_ledger()").fetchall() == []
        assert admin.execute("SELECT * FROM keen.verify_usage_stats()").fetchall() == []
        total, balance = admin.execute(
            "SELECT sum(t.amount), a.current_balance FROM keen.credit_transactions AS t"
            " JOIN keen.credit_accounts AS a ON a.id = t.account_id"
            " WHERE t.user_id = %s GROUP BY a.current_balance",
            (user_id,),
        ).fetchone() or (None, None)
        actions = admin.execute(
            "SELECT action, actor_role FROM keen.user_audit_log WHERE user_id = %s ORDER BY id",
            (user_id,),
        ).fetchall()
    assert total == balance == Decimal("12.75")
    login = service_login.split("//", 1)[1].split("@", 1)[0]
    assert actions == [
        ("register_user", login),
        ("set_billing", "postgres"),
        ("update_profile", login),
        ("enroll_mfa", login),
        ("start_email_verification", login),
        ("close_account", login),
    ]


def test_a_dump_holds_no_plaintext_token_code_or_secret(fresh_db_url: str) -> None:
    password, totp_secret = "correct horse battery staple", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    codes = recovery_codes()
    with Database(Settings(database_url=fresh_db_url, pool_max_size=2)) as db:
        user_id = register(db, "dump", password_hash=security.hash_password(password, FAST))
        verification = security.new_token()
        with db.tenant(user_id) as q:
            api = security.issue_token(q, "api_key")
            refresh = security.issue_token(q, "jwt_refresh", expires_at=in_a_day())
            q.users.enroll_mfa(
                secret_ciphertext=seal(totp_secret),
                recovery_code_hashes=[security.hash_token(c) for c in codes],
            )
            q.users.enable_mfa()
            q.users.start_email_verification(
                token_hash=security.hash_token(verification), expires_at=in_a_day()
            )
            sealed = q.users.get_mfa_secret()
    dump = _dump(fresh_db_url)
    plaintexts = [password, totp_secret, api.token, refresh.token, verification, *codes]
    assert [p for p in plaintexts if p in dump] == []
    stored = [
        security.hash_token(api.token),
        security.hash_token(verification),
        security.hash_token(codes[0]),
    ]
    assert sealed is not None
    assert all(s in dump for s in [*stored, sealed]), "the dump holds the hashed and sealed forms"


def test_the_async_twins_update_the_profile_and_read_the_trail(db: Database, db_url: str) -> None:
    user_id = register(db, "async")

    async def scenario() -> list[UserAuditLog]:
        settings = Settings(database_url=db_url, pool_max_size=1)
        async with AsyncDatabase(settings) as adb, adb.tenant(user_id) as q:
            await q.users.update_profile(
                display_name="Async", avatar_url=None, timezone=None, preferences=None
            )
            return await q.users.list_user_audit_log(before_id=None, max_rows=1)

    trail = asyncio.run(scenario())
    assert [(r.action, r.changes) for r in trail] == [
        ("update_profile", {"display_name": {"old": None, "new": "Async"}})
    ]
