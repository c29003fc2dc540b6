"""The generated queries (package `keen_queries`) bound to one transaction's connection.

`Database.tenant()` yields a `Queries`: ``q.credits.deduct_credits(amount=…)`` runs the
generated ``keen_queries.credits.deduct_credits(q.conn, amount=…)`` and raises a database error
as its `keen_sql.errors` class. The sqlc plugin writes the bound classes (`keen_queries.bound`,
one per query file, sync and async) from the queries themselves; keen_sql only adds the tenant
and passes `translate` as their error hook, so nothing here lists a query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

import psycopg
from keen_queries import bound, models

from keen_sql.errors import translate

__all__ = ["AsyncQueries", "Queries"]

P = ParamSpec("P")
R = TypeVar("R")
Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]


class Queries(bound.Queries):
    """One tenant (or service) transaction: its connection and the queries bound to it.

    Attributes:
        conn: the pooled connection, inside the open transaction (raw SQL, savepoints).
        user_id: the tenant of the transaction; None for a service transaction.
        analytics, credits, sessions, users: the generated query classes bound to `conn`.
    """

    __slots__ = ("user_id",)

    def __init__(self, conn: Conn, user_id: UUID | None) -> None:
        super().__init__(conn, translate)
        self.user_id = user_id

    def call(
        self, fn: Callable[Concatenate[Conn, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run any function taking the connection first (e.g. a generated query) on this
        transaction, with database errors raised as their `keen_sql.errors` class."""
        try:
            return fn(self.conn, *args, **kwargs)
        except psycopg.Error as exc:
            models.raise_mapped(exc, translate)


class AsyncQueries(bound.AsyncQueries):
    """The asyncio twin of `Queries` (bound to the async twins of the queries)."""

    __slots__ = ("user_id",)

    def __init__(self, conn: AsyncConn, user_id: UUID | None) -> None:
        super().__init__(conn, translate)
        self.user_id = user_id

    async def call(
        self,
        fn: Callable[Concatenate[AsyncConn, P], Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await any async function taking the connection first on this transaction."""
        try:
            return await fn(self.conn, *args, **kwargs)
        except psycopg.Error as exc:
            models.raise_mapped(exc, translate)
