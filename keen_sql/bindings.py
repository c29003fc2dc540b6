"""The generated queries (package `keen_queries`) bound to one transaction's connection.

`Database.tenant()` yields a `Queries`; ``q.credits.deduct_credits(p_amount=…)`` is
``keen_queries.credits.deduct_credits(q.conn, p_amount=…)`` with the connection filled in
and a database error raised as its `keen_sql.errors` class at the call site. Each domain
class lists its module's queries once, as typed descriptors: mypy checks every call's
arguments and result against the generated signature. tests_py/test_database.py fails when
a generated query is missing here, printing the lines to add.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload
from uuid import UUID

import psycopg
from keen_queries import analytics, credits, sessions, users

from keen_sql.errors import translate

__all__ = ["AsyncQueries", "Queries"]

P = ParamSpec("P")
R = TypeVar("R")
Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]


def _mapped(exc: psycopg.Error) -> Exception:
    """Return the keen_sql.errors exception for `exc`; raise `exc` itself when there is none."""
    mapped = translate(exc)
    if mapped is exc:
        raise exc
    return mapped


class _Domain:
    """Base of the sync domain classes: holds the transaction's connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: Conn) -> None:
        self.conn = conn


class _AsyncDomain:
    """Base of the async domain classes: holds the transaction's connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: AsyncConn) -> None:
        self.conn = conn


class query(Generic[P, R]):
    """Descriptor binding a generated sync query function to the domain object's connection."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[Concatenate[Conn, P], R]) -> None:
        self.fn = fn

    @overload
    def __get__(self, obj: None, owner: type[_Domain]) -> query[P, R]: ...
    @overload
    def __get__(self, obj: _Domain, owner: type[_Domain]) -> Callable[P, R]: ...
    def __get__(self, obj: _Domain | None, owner: type[_Domain]) -> query[P, R] | Callable[P, R]:
        if obj is None:
            return self
        fn, conn = self.fn, obj.conn

        def bound(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(conn, *args, **kwargs)
            except psycopg.Error as exc:
                raise _mapped(exc) from exc

        bound.__doc__ = fn.__doc__
        bound.__name__ = fn.__name__
        return bound


class aquery(Generic[P, R]):
    """Descriptor binding a generated async query function to the domain object's connection."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[Concatenate[AsyncConn, P], Awaitable[R]]) -> None:
        self.fn = fn

    @overload
    def __get__(self, obj: None, owner: type[_AsyncDomain]) -> aquery[P, R]: ...
    @overload
    def __get__(
        self, obj: _AsyncDomain, owner: type[_AsyncDomain]
    ) -> Callable[P, Awaitable[R]]: ...
    def __get__(
        self, obj: _AsyncDomain | None, owner: type[_AsyncDomain]
    ) -> aquery[P, R] | Callable[P, Awaitable[R]]:
        if obj is None:
            return self
        fn, conn = self.fn, obj.conn

        async def bound(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await fn(conn, *args, **kwargs)
            except psycopg.Error as exc:
                raise _mapped(exc) from exc

        bound.__doc__ = fn.__doc__
        bound.__name__ = fn.__name__
        return bound


class aiter_query(Generic[P, R]):
    """Descriptor binding a generated async streaming (``*_iter_async``) query function."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[Concatenate[AsyncConn, P], AsyncIterator[R]]) -> None:
        self.fn = fn

    @overload
    def __get__(self, obj: None, owner: type[_AsyncDomain]) -> aiter_query[P, R]: ...
    @overload
    def __get__(
        self, obj: _AsyncDomain, owner: type[_AsyncDomain]
    ) -> Callable[P, AsyncIterator[R]]: ...
    def __get__(
        self, obj: _AsyncDomain | None, owner: type[_AsyncDomain]
    ) -> aiter_query[P, R] | Callable[P, AsyncIterator[R]]:
        if obj is None:
            return self
        fn, conn = self.fn, obj.conn

        async def bound(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[R]:
            try:
                async for row in fn(conn, *args, **kwargs):
                    yield row
            except psycopg.Error as exc:
                raise _mapped(exc) from exc

        bound.__doc__ = fn.__doc__
        bound.__name__ = fn.__name__
        return bound


# ----- one class per generated module (sync, then async) -----------------------------------


class Analytics(_Domain):
    """`keen_queries.analytics` bound to one transaction."""

    __slots__ = ()
    dashboard_metrics = query(analytics.dashboard_metrics)
    dashboard_metrics_iter = query(analytics.dashboard_metrics_iter)
    rebuild_usage_stats = query(analytics.rebuild_usage_stats)
    refresh_dashboard_metrics = query(analytics.refresh_dashboard_metrics)
    session_cost_breakdown = query(analytics.session_cost_breakdown)
    session_cost_breakdown_iter = query(analytics.session_cost_breakdown_iter)
    usage_report = query(analytics.usage_report)
    usage_report_iter = query(analytics.usage_report_iter)
    verify_usage_stats = query(analytics.verify_usage_stats)
    verify_usage_stats_iter = query(analytics.verify_usage_stats_iter)


class Credits(_Domain):
    """`keen_queries.credits` bound to one transaction."""

    __slots__ = ()
    add_credits = query(credits.add_credits)
    capture_hold = query(credits.capture_hold)
    check_credits = query(credits.check_credits)
    claim_recharge_requests = query(credits.claim_recharge_requests)
    claim_recharge_requests_iter = query(credits.claim_recharge_requests_iter)
    complete_recharge_request = query(credits.complete_recharge_request)
    configure_auto_recharge = query(credits.configure_auto_recharge)
    credit_balance = query(credits.credit_balance)
    deduct_credits = query(credits.deduct_credits)
    fail_recharge_request = query(credits.fail_recharge_request)
    hold_credits = query(credits.hold_credits)
    list_credit_transactions = query(credits.list_credit_transactions)
    list_credit_transactions_iter = query(credits.list_credit_transactions_iter)
    release_hold = query(credits.release_hold)
    round_cost = query(credits.round_cost)
    set_spending_limits = query(credits.set_spending_limits)
    sweep_expired_holds = query(credits.sweep_expired_holds)
    verify_ledger = query(credits.verify_ledger)
    verify_ledger_iter = query(credits.verify_ledger_iter)


class Sessions(_Domain):
    """`keen_queries.sessions` bound to one transaction."""

    __slots__ = ()
    cancel_session = query(sessions.cancel_session)
    close_connection = query(sessions.close_connection)
    complete_session = query(sessions.complete_session)
    get_session = query(sessions.get_session)
    get_session_by_id = query(sessions.get_session_by_id)
    list_session_events = query(sessions.list_session_events)
    list_session_events_iter = query(sessions.list_session_events_iter)
    list_sessions = query(sessions.list_sessions)
    list_sessions_iter = query(sessions.list_sessions_iter)
    open_connection = query(sessions.open_connection)
    ping_connection = query(sessions.ping_connection)
    prune_session_events = query(sessions.prune_session_events)
    reap_stale_connections = query(sessions.reap_stale_connections)
    session_events_waiting = query(sessions.session_events_waiting)
    session_tree = query(sessions.session_tree)
    session_tree_iter = query(sessions.session_tree_iter)
    start_session = query(sessions.start_session)
    update_session_progress = query(sessions.update_session_progress)


class Users(_Domain):
    """`keen_queries.users` bound to one transaction."""

    __slots__ = ()
    authenticate_token = query(users.authenticate_token)
    create_auth_token = query(users.create_auth_token)
    current_user = query(users.current_user)
    list_auth_tokens = query(users.list_auth_tokens)
    list_auth_tokens_iter = query(users.list_auth_tokens_iter)
    login_lookup = query(users.login_lookup)
    record_login = query(users.record_login)
    register_user = query(users.register_user)
    revoke_token = query(users.revoke_token)
    rotate_refresh_token = query(users.rotate_refresh_token)


class AsyncAnalytics(_AsyncDomain):
    """`keen_queries.analytics` (async twins) bound to one transaction."""

    __slots__ = ()
    dashboard_metrics = aquery(analytics.dashboard_metrics_async)
    dashboard_metrics_iter = aiter_query(analytics.dashboard_metrics_iter_async)
    rebuild_usage_stats = aquery(analytics.rebuild_usage_stats_async)
    refresh_dashboard_metrics = aquery(analytics.refresh_dashboard_metrics_async)
    session_cost_breakdown = aquery(analytics.session_cost_breakdown_async)
    session_cost_breakdown_iter = aiter_query(analytics.session_cost_breakdown_iter_async)
    usage_report = aquery(analytics.usage_report_async)
    usage_report_iter = aiter_query(analytics.usage_report_iter_async)
    verify_usage_stats = aquery(analytics.verify_usage_stats_async)
    verify_usage_stats_iter = aiter_query(analytics.verify_usage_stats_iter_async)


class AsyncCredits(_AsyncDomain):
    """`keen_queries.credits` (async twins) bound to one transaction."""

    __slots__ = ()
    add_credits = aquery(credits.add_credits_async)
    capture_hold = aquery(credits.capture_hold_async)
    check_credits = aquery(credits.check_credits_async)
    claim_recharge_requests = aquery(credits.claim_recharge_requests_async)
    claim_recharge_requests_iter = aiter_query(credits.claim_recharge_requests_iter_async)
    complete_recharge_request = aquery(credits.complete_recharge_request_async)
    configure_auto_recharge = aquery(credits.configure_auto_recharge_async)
    credit_balance = aquery(credits.credit_balance_async)
    deduct_credits = aquery(credits.deduct_credits_async)
    fail_recharge_request = aquery(credits.fail_recharge_request_async)
    hold_credits = aquery(credits.hold_credits_async)
    list_credit_transactions = aquery(credits.list_credit_transactions_async)
    list_credit_transactions_iter = aiter_query(credits.list_credit_transactions_iter_async)
    release_hold = aquery(credits.release_hold_async)
    round_cost = aquery(credits.round_cost_async)
    set_spending_limits = aquery(credits.set_spending_limits_async)
    sweep_expired_holds = aquery(credits.sweep_expired_holds_async)
    verify_ledger = aquery(credits.verify_ledger_async)
    verify_ledger_iter = aiter_query(credits.verify_ledger_iter_async)


class AsyncSessions(_AsyncDomain):
    """`keen_queries.sessions` (async twins) bound to one transaction."""

    __slots__ = ()
    cancel_session = aquery(sessions.cancel_session_async)
    close_connection = aquery(sessions.close_connection_async)
    complete_session = aquery(sessions.complete_session_async)
    get_session = aquery(sessions.get_session_async)
    get_session_by_id = aquery(sessions.get_session_by_id_async)
    list_session_events = aquery(sessions.list_session_events_async)
    list_session_events_iter = aiter_query(sessions.list_session_events_iter_async)
    list_sessions = aquery(sessions.list_sessions_async)
    list_sessions_iter = aiter_query(sessions.list_sessions_iter_async)
    open_connection = aquery(sessions.open_connection_async)
    ping_connection = aquery(sessions.ping_connection_async)
    prune_session_events = aquery(sessions.prune_session_events_async)
    reap_stale_connections = aquery(sessions.reap_stale_connections_async)
    session_events_waiting = aquery(sessions.session_events_waiting_async)
    session_tree = aquery(sessions.session_tree_async)
    session_tree_iter = aiter_query(sessions.session_tree_iter_async)
    start_session = aquery(sessions.start_session_async)
    update_session_progress = aquery(sessions.update_session_progress_async)


class AsyncUsers(_AsyncDomain):
    """`keen_queries.users` (async twins) bound to one transaction."""

    __slots__ = ()
    authenticate_token = aquery(users.authenticate_token_async)
    create_auth_token = aquery(users.create_auth_token_async)
    current_user = aquery(users.current_user_async)
    list_auth_tokens = aquery(users.list_auth_tokens_async)
    list_auth_tokens_iter = aiter_query(users.list_auth_tokens_iter_async)
    login_lookup = aquery(users.login_lookup_async)
    record_login = aquery(users.record_login_async)
    register_user = aquery(users.register_user_async)
    revoke_token = aquery(users.revoke_token_async)
    rotate_refresh_token = aquery(users.rotate_refresh_token_async)


# ----- what a transaction yields -----------------------------------------------------------


class Queries:
    """One tenant (or service) transaction: its connection and the queries bound to it.

    Attributes:
        conn: the pooled connection, inside the open transaction (raw SQL, savepoints).
        user_id: the tenant of the transaction; None for a service transaction.
        analytics, credits, sessions, users: the generated modules' queries bound to `conn`.
    """

    __slots__ = ("analytics", "conn", "credits", "sessions", "user_id", "users")

    def __init__(self, conn: Conn, user_id: UUID | None) -> None:
        self.conn = conn
        self.user_id = user_id
        self.analytics = Analytics(conn)
        self.credits = Credits(conn)
        self.sessions = Sessions(conn)
        self.users = Users(conn)

    def call(
        self, fn: Callable[Concatenate[Conn, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run any function taking the connection first (e.g. a generated query) on this
        transaction, with database errors raised as their `keen_sql.errors` class."""
        try:
            return fn(self.conn, *args, **kwargs)
        except psycopg.Error as exc:
            raise _mapped(exc) from exc


class AsyncQueries:
    """The asyncio twin of `Queries` (domains bound to the async twins of the queries)."""

    __slots__ = ("analytics", "conn", "credits", "sessions", "user_id", "users")

    def __init__(self, conn: AsyncConn, user_id: UUID | None) -> None:
        self.conn = conn
        self.user_id = user_id
        self.analytics = AsyncAnalytics(conn)
        self.credits = AsyncCredits(conn)
        self.sessions = AsyncSessions(conn)
        self.users = AsyncUsers(conn)

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
            raise _mapped(exc) from exc
