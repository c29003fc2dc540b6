"""Helpers shared by the tenant-isolation tests: sign a tenant up, give it tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

import psycopg
from keen_queries.models import AuthToken

from keen_sql.bindings import Queries
from keen_sql.database import Database
from keen_sql.security import hash_token


def register(
    db: Database,
    prefix: str = "t",
    timezone: str = "UTC",
    *,
    username: str | None = None,
    password_hash: str = "x" * 40,
) -> uuid.UUID:
    """Sign a new user up through register_user (a service transaction); return its id.

    The username is `username` or `prefix` + random; the e-mail is `<username>@example.com`.
    """
    tag = username or f"{prefix}{uuid.uuid4().hex[:10]}"
    with db.service() as q:
        row = q.users.register_user(
            email=f"{tag}@example.com",
            username=tag,
            password_hash=password_hash,
            timezone=timezone,
        )
    return row


def create_token(
    q: Queries,
    token: str | None = None,
    *,
    token_type: str = "api_key",
    expires_at: datetime | None = None,
    rate_limit_per_hour: int = 1000,
    name: str | None = None,
) -> AuthToken:
    """Store a token (random unless given) of the transaction's tenant; return its row."""
    row = q.users.create_auth_token(
        token_type=token_type,
        token_hash=hash_token(token or uuid.uuid4().hex),
        token_name=name,
        scopes=[],
        expires_at=expires_at,
        rate_limit_per_hour=rate_limit_per_hour,
        created_ip=None,
        user_agent=None,
    )
    assert row is not None
    return row


def tenant_lookup_disagreements(db_url: str) -> list[tuple[object, ...]]:
    """What keen.verify_tenant_lookup() reports (an operator check, run as the URL's login):
    empty when keen.tenant_lookup holds exactly the values live users and tokens hold."""
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT * FROM keen.verify_tenant_lookup()").fetchall()
