"""Passwords and tokens: hashing, authentication refusals, the rate limit under concurrency,
refresh-token rotation with reuse detection, and the login flow."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from argon2 import PasswordHasher
from keen_queries.users import AuthenticateTokenRow

from keen_sql import security
from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database
from keen_sql.errors import (
    AccountNotActive,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    RefreshTokenReuse,
)
from tests_py.tenants import create_token, register, tenant_lookup_disagreements

# Cheap argon2id parameters: the tests exercise the flow, not the cost.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
CONCURRENT_CALLERS = 8
CALLS_PER_CALLER = 15
RATE_LIMIT = 40


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=CONCURRENT_CALLERS)
    with Database(settings) as database:
        yield database


@pytest.fixture(autouse=True)
def lookup_stays_consistent(db_url: str) -> Iterator[None]:
    """After every flow: keen.verify_tenant_lookup() is empty (every token hash is in
    keen.tenant_lookup under its user and token, and nothing else is)."""
    yield
    assert tenant_lookup_disagreements(db_url) == []


@pytest.fixture
def user_id(db: Database) -> uuid.UUID:
    return register(db, "tok")


def _authenticate(db: Database, token: str) -> AuthenticateTokenRow | None:
    with db.service() as q:
        return security.authenticate(q, token, ipaddress.ip_address("198.51.100.7"))


def _refresh_token(db: Database, user_id: uuid.UUID) -> str:
    with db.tenant(user_id) as q:
        issued = security.issue_token(
            q, "jwt_refresh", expires_at=datetime.now(UTC) + timedelta(days=1)
        )
    assert issued.row.family_id is not None
    return issued.token


# ----- hashing ---------------------------------------------------------------------------


def test_password_hash_is_argon2id_salted_and_verifies() -> None:
    first, second = security.hash_password("s3cret", FAST), security.hash_password("s3cret", FAST)
    assert first.startswith("$argon2id$") and first != second  # a fresh salt each time
    assert security.verify_password(first, "s3cret", FAST)
    assert not security.verify_password(first, "S3cret", FAST)
    assert not security.verify_password("not-a-hash", "s3cret", FAST)


def test_hash_made_with_other_parameters_needs_rehash() -> None:
    assert security.password_needs_rehash(security.hash_password("pw", FAST))
    assert not security.password_needs_rehash(security.hash_password("pw"))


def test_tokens_are_random_256_bit_and_only_their_sha256_is_stored(
    db: Database, user_id: uuid.UUID
) -> None:
    tokens = {security.new_token() for _ in range(1000)}
    assert len(tokens) == 1000 and all(len(t) == 43 for t in tokens)
    assert security.new_token("keen_ak_").startswith("keen_ak_")
    with db.tenant(user_id) as q:
        issued = security.issue_token(q, "api_key", name="ci", scopes=["read"])
    assert issued.row.token_hash == security.hash_token(issued.token)
    assert len(issued.row.token_hash) == 64 and issued.token not in issued.row.token_hash


# ----- authentication refusals ------------------------------------------------------------


def test_valid_token_authenticates_and_counts_the_use(db: Database, user_id: uuid.UUID) -> None:
    with db.tenant(user_id) as q:
        issued = security.issue_token(q, "api_key", scopes=["read", "write"])
    auth = _authenticate(db, issued.token)
    assert auth is not None
    assert (auth.user_id, auth.token_id, auth.token_type, auth.scopes, auth.rate_limited) == (
        user_id,
        issued.row.id,
        "api_key",
        ["read", "write"],
        False,
    )
    with db.tenant(user_id) as q:
        (row,) = [t for t in q.users.list_auth_tokens() if t.id == issued.row.id]
    assert row.usage_count == 1 and row.last_used_ip == ipaddress.ip_address("198.51.100.7")
    assert row.last_used_at is not None


def test_unknown_token_is_refused(db: Database) -> None:
    assert _authenticate(db, security.new_token()) is None


def test_revoked_token_is_refused(db: Database, user_id: uuid.UUID) -> None:
    with db.tenant(user_id) as q:
        issued = security.issue_token(q, "api_key")
        q.users.revoke_token(token_id=issued.row.id)
    assert _authenticate(db, issued.token) is None


def test_expired_token_is_refused(db: Database, db_url: str, user_id: uuid.UUID) -> None:
    with db.tenant(user_id) as q:
        issued = security.issue_token(
            q, "session", expires_at=datetime.now(UTC) + timedelta(hours=1)
        )
    with psycopg.connect(db_url) as admin:  # let an hour pass for this token
        admin.execute(
            "UPDATE keen.auth_tokens SET created_at = now() - interval '2 hours',"
            " expires_at = now() - interval '1 second' WHERE id = %s",
            (issued.row.id,),
        )
    assert _authenticate(db, issued.token) is None


def test_token_expiring_in_the_past_cannot_be_created_KE013(
    db: Database, user_id: uuid.UUID
) -> None:
    with pytest.raises(InvalidArgument), db.tenant(user_id) as q:
        create_token(q, expires_at=datetime.now(UTC) - timedelta(seconds=1))


def test_rate_limited_token_is_refused_until_the_next_hour(
    db: Database, db_url: str, user_id: uuid.UUID
) -> None:
    token = security.new_token()
    with db.tenant(user_id) as q:
        row = create_token(q, token, rate_limit_per_hour=2)
    results = [_authenticate(db, token) for _ in range(3)]
    assert [r.rate_limited if r else None for r in results] == [False, False, True]
    with psycopg.connect(db_url) as admin:
        admin.execute(
            "UPDATE keen.auth_tokens SET rate_window_start = now() - interval '61 minutes'"
            " WHERE id = %s",
            (row.id,),
        )
    again = _authenticate(db, token)
    assert again is not None and not again.rate_limited


def test_rate_limit_holds_under_8_concurrent_callers(db: Database, user_id: uuid.UUID) -> None:
    token = security.new_token()
    with db.tenant(user_id) as q:
        row = create_token(q, token, rate_limit_per_hour=RATE_LIMIT)
    start = threading.Barrier(CONCURRENT_CALLERS)
    verdicts: list[bool] = []
    lock = threading.Lock()

    def caller() -> None:
        start.wait()
        for _ in range(CALLS_PER_CALLER):
            auth = _authenticate(db, token)
            assert auth is not None
            with lock:
                verdicts.append(auth.rate_limited is False)

    threads = [threading.Thread(target=caller) for _ in range(CONCURRENT_CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(verdicts) == CONCURRENT_CALLERS * CALLS_PER_CALLER
    assert verdicts.count(True) == RATE_LIMIT  # exactly the limit accepted, never more
    with db.tenant(user_id) as q:
        (stored,) = [t for t in q.users.list_auth_tokens() if t.id == row.id]
    assert stored.usage_count == RATE_LIMIT


# ----- refresh-token rotation --------------------------------------------------------------


def test_rotation_issues_a_successor_in_the_same_family_and_retires_the_old_token(
    db: Database, user_id: uuid.UUID
) -> None:
    old = _refresh_token(db, user_id)
    new = security.rotate_refresh_token(db, old, ttl=timedelta(days=7), user_agent="cli/1.0")
    assert new.token != old and new.row.user_id == user_id and new.row.user_agent == "cli/1.0"
    assert _authenticate(db, new.token) is not None
    with db.tenant(user_id) as q:
        tokens = {t.id: t for t in q.users.list_auth_tokens()}
    retired = next(t for t in tokens.values() if t.replaced_by == new.row.id)
    assert retired.revoked_reason == "rotated" and retired.family_id == new.row.family_id


def test_replayed_refresh_token_is_refused_and_revokes_the_whole_family(
    db: Database, user_id: uuid.UUID
) -> None:
    first = _refresh_token(db, user_id)
    second = security.rotate_refresh_token(db, first)
    third = security.rotate_refresh_token(db, second.token)
    with pytest.raises(NotFound):
        security.rotate_refresh_token(db, first)  # the thief (or a stale copy) replays
    assert _authenticate(db, third.token) is None  # the family's live token is gone too
    with pytest.raises(NotFound):
        security.rotate_refresh_token(db, third.token)
    with db.tenant(user_id) as q:
        family = [t for t in q.users.list_auth_tokens() if t.family_id == third.row.family_id]
    assert len(family) == 3 and all(not t.is_active for t in family)
    assert {t.revoked_reason for t in family} == {"rotated", "reuse_detected"}


def test_losing_a_rotation_race_raises_KE011_and_the_family_is_revoked(
    db: Database, user_id: uuid.UUID
) -> None:
    token = _refresh_token(db, user_id)
    token_hash = security.hash_token(token)
    # Both requests authenticate the token before either rotates it.
    for _ in range(2):
        assert _authenticate(db, token) is not None
    with db.tenant(user_id) as q:
        winner = q.users.rotate_refresh_token(
            token_hash=token_hash,
            new_token_hash=security.hash_token("winner"),
            expires_at=datetime.now(UTC) + timedelta(days=1),
            ip=None,
            user_agent=None,
        )
    assert winner is not None
    with pytest.raises(RefreshTokenReuse) as caught, db.tenant(user_id) as q:
        q.users.rotate_refresh_token(
            token_hash=token_hash,
            new_token_hash=security.hash_token("loser"),
            expires_at=datetime.now(UTC) + timedelta(days=1),
            ip=None,
            user_agent=None,
        )
    assert caught.value.sqlstate == "KE011"
    assert _authenticate(db, token) is None  # the replay revokes the family…
    assert _authenticate(db, "winner") is None  # …including the winner's successor


def test_concurrent_rotations_of_one_token_leave_one_winner_and_no_live_family(
    db: Database, user_id: uuid.UUID
) -> None:
    token = _refresh_token(db, user_id)
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def rotate() -> None:
        start.wait()
        try:
            outcomes.append(security.rotate_refresh_token(db, token))
        except (RefreshTokenReuse, NotFound) as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, security.IssuedToken)]
    assert len(winners) == 1, outcomes
    assert _authenticate(db, winners[0].token) is None  # a replay happened: family revoked


def test_logout_revokes_the_refresh_token_family(db: Database, user_id: uuid.UUID) -> None:
    first = _refresh_token(db, user_id)
    second = security.rotate_refresh_token(db, first)
    with db.tenant(user_id) as q:
        q.users.revoke_token(token_id=second.row.id)
    assert _authenticate(db, second.token) is None


# ----- login ------------------------------------------------------------------------------


def test_login_verifies_the_password_and_stamps_the_login(db: Database) -> None:
    tag = uuid.uuid4().hex[:8]
    user_id = register(
        db, username=f"login_{tag}", password_hash=security.hash_password("hunter22", FAST)
    )
    ip = ipaddress.ip_address("203.0.113.5")
    result = security.login(db, f"LOGIN_{tag}@Example.COM", "hunter22", ip=ip, hasher=FAST)
    assert result == security.LoginResult(user_id, False, False, False)
    with db.tenant(user_id) as q:
        me = q.users.current_user()
    assert me is not None and me.last_login_ip == ip and me.last_login_at is not None
    assert security.login(db, f"login_{tag}", "wrong", hasher=FAST) is None
    assert security.login(db, f"nobody_{tag}", "hunter22", hasher=FAST) is None


def test_login_to_a_suspended_account_raises_AccountNotActive(db: Database, db_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    register(db, username=f"susp_{tag}", password_hash=security.hash_password("pw-12345", FAST))
    with psycopg.connect(db_url) as admin:
        admin.execute(
            "UPDATE keen.users SET account_status = 'suspended' WHERE username = %s",
            (f"susp_{tag}",),
        )
    with pytest.raises(AccountNotActive):
        security.login(db, f"susp_{tag}", "pw-12345", hasher=FAST)


# ----- sign-up ----------------------------------------------------------------------------


def test_concurrent_sign_ups_with_one_email_leave_one_user_the_rest_KE009(db: Database) -> None:
    tag = uuid.uuid4().hex[:8]
    start = threading.Barrier(CONCURRENT_CALLERS)
    outcomes: list[object] = []

    def sign_up(i: int) -> None:
        start.wait()
        try:
            with db.service() as q:
                row = q.users.register_user(
                    email=f"race-{tag}@example.com" if i % 2 else f"RACE-{tag}@example.com",
                    username=f"race_{tag}_{i}",
                    password_hash="x" * 40,
                    display_name=None,
                    timezone="UTC",
                )
            outcomes.append(row)
        except AlreadyExists as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(CONCURRENT_CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == CONCURRENT_CALLERS
    assert sum(not isinstance(o, AlreadyExists) for o in outcomes) == 1
    with db.service() as q:
        assert q.users.login_lookup(login=f"race-{tag}@example.com") is not None


def test_sign_up_with_an_unknown_time_zone_raises_KE013(db: Database) -> None:
    with pytest.raises(InvalidArgument), db.service() as q:
        q.users.register_user(
            email=f"tz-{uuid.uuid4().hex[:8]}@example.com",
            username=f"tz_{uuid.uuid4().hex[:8]}",
            password_hash="x" * 40,
            display_name=None,
            timezone="Mars/Olympus_Mons",
        )


def test_async_login_and_rotation_follow_the_same_rules(db: Database, db_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    user_id = register(
        db, username=f"async_{tag}", password_hash=security.hash_password("pw-async", FAST)
    )
    first = _refresh_token(db, user_id)

    async def scenario() -> tuple[security.LoginResult | None, bool, str]:
        settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=2)
        async with AsyncDatabase(settings) as adb:
            ok = await security.login_async(adb, f"async_{tag}", "pw-async", hasher=FAST)
            bad = await security.login_async(adb, f"async_{tag}", "nope", hasher=FAST)
            second = await security.rotate_refresh_token_async(adb, first)
            with pytest.raises(NotFound):
                await security.rotate_refresh_token_async(adb, first)  # replay
            return ok, bad is None, second.token

    ok, refused, second = asyncio.run(scenario())
    assert ok is not None and ok.user_id == user_id and refused
    assert _authenticate(db, second) is None  # the replay revoked the family
