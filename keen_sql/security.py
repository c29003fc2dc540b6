"""Passwords and tokens: what SQL cannot do (argon2id, randomness), and the flows around it.

- Passwords are hashed with argon2id (argon2-cffi, RFC 9106 low-memory profile by default);
  only the hash reaches the database, and login_lookup() hands it back for verification here.
- Tokens are 256 random bits (`secrets`), URL-safe; the database stores only their
  SHA-256 hex digest, so a database leak yields no usable token.
- Refresh-token rotation runs in two transactions, because a refresh token arrives without
  tenant: `authenticate_token` (SECURITY DEFINER, service transaction) finds the tenant and
  refuses replayed tokens — revoking their family, committed — then `rotate_refresh_token`
  runs in that tenant's transaction under RLS. See `rotate_refresh_token` below.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from keen_queries.models import AuthToken
from keen_queries.users import AuthenticateTokenRow, LoginLookupRow

from keen_sql.bindings import Queries
from keen_sql.database import AsyncDatabase, Database
from keen_sql.errors import AccountNotActive, NotFound, RefreshTokenReuse

__all__ = [
    "DEFAULT_HASHER",
    "IssuedToken",
    "LoginResult",
    "authenticate",
    "hash_password",
    "hash_token",
    "issue_token",
    "login",
    "login_async",
    "new_token",
    "password_needs_rehash",
    "rotate_refresh_token",
    "rotate_refresh_token_async",
    "verify_password",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: argon2id with argon2-cffi's defaults (RFC 9106 "low memory": t=3, m=64 MiB, p=4).
DEFAULT_HASHER = PasswordHasher()
TOKEN_BYTES = 32  # 256 bits of entropy per token

# Verified against when a login names no user, so that "no such user" takes as long as
# "wrong password" (no user enumeration by timing).
_DUMMY_HASH = DEFAULT_HASHER.hash("keen-sql: no such user")


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """Return the argon2id hash (PHC string) of `password` with a fresh random salt."""
    return hasher.hash(password)


def verify_password(
    password_hash: str, password: str, hasher: PasswordHasher = DEFAULT_HASHER
) -> bool:
    """Whether `password` matches `password_hash`; False for a mismatch or a malformed hash."""
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """Whether `password_hash` was made with other parameters than `hasher`'s."""
    return hasher.check_needs_rehash(password_hash)


def new_token(prefix: str = "") -> str:
    """Return a new random token: `prefix` + 43 URL-safe characters (256 bits)."""
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Return the lower-case hex SHA-256 of `token`: the only form the database stores."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just issued: the secret to hand to the client once, and its stored row."""

    token: str
    row: AuthToken


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A verified login: the user, and what the caller must still do."""

    user_id: UUID
    mfa_required: bool
    email_verified: bool
    password_needs_rehash: bool


def issue_token(
    q: Queries,
    token_type: str,
    *,
    name: str | None = None,
    scopes: Sequence[str] = (),
    expires_at: datetime | None = None,
    rate_limit_per_hour: int = 1000,
    ip: IPAddress | None = None,
    user_agent: str | None = None,
    prefix: str = "",
) -> IssuedToken:
    """Create a token of the tenant of `q` (a `db.tenant()` transaction) and return it."""
    token = new_token(prefix)
    row = q.users.create_auth_token(
        token_type=token_type,
        token_hash=hash_token(token),
        token_name=name,
        scopes=list(scopes),
        expires_at=expires_at,
        rate_limit_per_hour=rate_limit_per_hour,
        created_ip=ip,
        user_agent=user_agent,
    )
    assert row is not None  # the function returns its row or raises
    return IssuedToken(token, row)


def authenticate(
    q: Queries, token: str, ip: IPAddress | None = None
) -> AuthenticateTokenRow | None:
    """Authenticate `token` in a `db.service()` transaction and count the use.

    None for an unknown, revoked or expired token (or a replayed refresh token, whose
    family is then revoked). A row with ``rate_limited`` true means: refuse with 429.
    """
    return q.users.authenticate_token(token_hash=hash_token(token), ip=ip)


def _verified(
    found: LoginLookupRow | None, password: str, hasher: PasswordHasher
) -> LoginResult | None:
    """The outcome of a login once its user was looked up (no database access)."""
    if found is None or found.user_id is None or found.password_hash is None:
        verify_password(_DUMMY_HASH, password, hasher)
        return None
    if not verify_password(found.password_hash, password, hasher):
        return None
    if found.account_status != "active":
        raise AccountNotActive(
            f"account not active: user {found.user_id} is {found.account_status}"
        )
    return LoginResult(
        user_id=found.user_id,
        mfa_required=bool(found.mfa_enabled),
        email_verified=bool(found.email_verified),
        password_needs_rehash=password_needs_rehash(found.password_hash, hasher),
    )


def login(
    db: Database,
    login_name: str,
    password: str,
    *,
    ip: IPAddress | None = None,
    hasher: PasswordHasher = DEFAULT_HASHER,
) -> LoginResult | None:
    """Verify a password login; on success stamp the login and return the user.

    None when the login or the password is wrong (indistinguishable, also in time).
    Raises `AccountNotActive` for a suspended or deleted account with the right password.
    """
    with db.service() as q:
        found = q.users.login_lookup(login=login_name)
    result = _verified(found, password, hasher)
    if result is not None:
        with db.tenant(result.user_id) as q:
            q.users.record_login(ip=ip)
    return result


async def login_async(
    db: AsyncDatabase,
    login_name: str,
    password: str,
    *,
    ip: IPAddress | None = None,
    hasher: PasswordHasher = DEFAULT_HASHER,
) -> LoginResult | None:
    """The asyncio twin of `login` (argon2 runs in a worker thread)."""
    async with db.service() as q:
        found = await q.users.login_lookup(login=login_name)
    result = await asyncio.to_thread(_verified, found, password, hasher)
    if result is not None:
        async with db.tenant(result.user_id) as q:
            await q.users.record_login(ip=ip)
    return result


def _refresh_owner(auth: AuthenticateTokenRow | None) -> UUID:
    """The tenant of an authenticated refresh token; `NotFound` for anything else."""
    if auth is None or auth.user_id is None or auth.token_type != "jwt_refresh":
        raise NotFound("not found: refresh token is unknown, revoked, expired or replayed")
    if auth.rate_limited:
        raise NotFound("not found: refresh token is over its hourly rate limit")
    return auth.user_id


def rotate_refresh_token(
    db: Database,
    refresh_token: str,
    *,
    ttl: timedelta = timedelta(days=30),
    ip: IPAddress | None = None,
    user_agent: str | None = None,
) -> IssuedToken:
    """Exchange a refresh token for its successor in the same family.

    1. `db.service()`: authenticate_token finds the token's tenant. A token already rotated
       is a replay: the function revokes the whole family (committed with this transaction)
       and returns nothing, so this raises `NotFound` like for any invalid token.
    2. `db.tenant(user_id)`: rotate_refresh_token revokes the token and inserts its
       successor under RLS. If another rotation of the same token won a race in between,
       it raises KE011; the token is then presented once more to authenticate_token, which
       now sees it rotated and revokes the family, and `RefreshTokenReuse` is raised.
    """
    token_hash, successor = hash_token(refresh_token), new_token()
    with db.service() as q:
        auth = q.users.authenticate_token(token_hash=token_hash, ip=ip)
    # Only after the commit: raising inside the block would roll a family revocation back.
    user_id = _refresh_owner(auth)
    try:
        with db.tenant(user_id) as q:
            row = q.users.rotate_refresh_token(
                token_hash=token_hash,
                new_token_hash=hash_token(successor),
                expires_at=datetime.now(UTC) + ttl,
                ip=ip,
                user_agent=user_agent,
            )
    except RefreshTokenReuse:
        with db.service() as q:  # the replay revokes the family, committed here
            q.users.authenticate_token(token_hash=token_hash, ip=ip)
        raise
    assert row is not None
    return IssuedToken(successor, row)


async def rotate_refresh_token_async(
    db: AsyncDatabase,
    refresh_token: str,
    *,
    ttl: timedelta = timedelta(days=30),
    ip: IPAddress | None = None,
    user_agent: str | None = None,
) -> IssuedToken:
    """The asyncio twin of `rotate_refresh_token` (same two transactions, same errors)."""
    token_hash, successor = hash_token(refresh_token), new_token()
    async with db.service() as q:
        auth = await q.users.authenticate_token(token_hash=token_hash, ip=ip)
    user_id = _refresh_owner(auth)
    try:
        async with db.tenant(user_id) as q:
            row = await q.users.rotate_refresh_token(
                token_hash=token_hash,
                new_token_hash=hash_token(successor),
                expires_at=datetime.now(UTC) + ttl,
                ip=ip,
                user_agent=user_agent,
            )
    except RefreshTokenReuse:
        async with db.service() as q:
            await q.users.authenticate_token(token_hash=token_hash, ip=ip)
        raise
    assert row is not None
    return IssuedToken(successor, row)
