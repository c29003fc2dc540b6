"""Connection pool and tenant transactions: the only way services reach the database.

``Database`` owns a psycopg_pool pool; ``with db.tenant(user_id) as q:`` runs one
transaction as ``keen_app`` with the tenant context set, and ``q`` exposes the generated
query functions bound to that transaction. ``AsyncDatabase`` is the asyncio twin.

Isolation rests on one rule: nothing tenant-specific is ever set at session level. Every
transaction sets the role, the tenant and the timeouts with ``set_config(…, true)`` in a
single round trip, so they end with the transaction, whatever the pool or a PgBouncer in
transaction mode does with the server connection afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    ExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from typing import (
    Any,
    Concatenate,
    LiteralString,
    NoReturn,
    ParamSpec,
    Self,
    TypedDict,
    TypeVar,
)
from uuid import UUID

import psycopg
from keen_queries import credits, models
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from keen_sql.bindings import AsyncQueries, Queries
from keen_sql.config import Settings
from keen_sql.context import TenantContext
from keen_sql.errors import translate
from keen_sql.replica import BEGIN_READ_ONLY, AsyncReplicaRoute, ReplicaRoute

__all__ = [
    "AsyncDatabase",
    "AsyncQueries",
    "Database",
    "Health",
    "Queries",
    "TransactionAborted",
    "settings_for",
]

log = logging.getLogger("keen_sql.database")


# The tenant context (keen_sql.context, the one builder of it): `Database.tenant()` pipelines
# its statements behind an explicit BEGIN, so the transaction and its context cost one round
# trip.
BEGIN: LiteralString = "BEGIN"
COMMIT: LiteralString = "COMMIT"


# What a transaction may leave on its connection at session level (a SET, a LISTEN, an
# advisory lock, a prepared statement, a held cursor): the pool's `reset` drops all of it
# when the connection comes back, then sets CONFIGURE's defaults again. Behind PgBouncer in
# transaction mode the next transaction may run on another server connection: there
# PgBouncer's own `server_reset_query = DISCARD ALL` with `server_reset_query_always = 1`
# does the same per server connection (docs/python_api.md).
DISCARD_ALL: LiteralString = "DISCARD ALL"
# Session-level defaults for each new pooled connection: timeouts only, never a tenant.
CONFIGURE: LiteralString = (
    "SELECT pg_catalog.set_config('statement_timeout', %s, false),"
    " pg_catalog.set_config('lock_timeout', %s, false)"
)
HEALTH: LiteralString = (
    "SELECT pg_catalog.current_setting('server_version'), pg_catalog.pg_is_in_recovery()"
)


def _tenant_id(user_id: UUID | str) -> str:
    """Return the canonical text of a tenant id; refuse anything that is not a UUID."""
    if isinstance(user_id, UUID):
        return str(user_id)
    return str(UUID(user_id))


def _timeout_params(settings: Settings) -> tuple[str, str]:
    return f"{settings.statement_timeout_ms}ms", f"{settings.lock_timeout_ms}ms"


def settings_for(target: Settings | str | None) -> Settings:
    """The settings of `Database(target)`: given, or a conninfo over `Settings.from_env()`.

    A libpq URL or key=value conninfo replaces the environment's connection only; None
    means `Settings.from_env()` (KEEN_DATABASE_URL, else libpq's PG* environment).
    """
    if isinstance(target, Settings):
        return target
    settings = Settings.from_env()
    if target is None:
        return settings
    return dataclasses.replace(settings, database_url=target)


def _reconnect_failed(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> None:
    """psycopg_pool gave up reconnecting (reconnect_timeout): say so; it keeps trying."""
    log.error(
        "pool %s could not connect to the database for %.0f s; requests fail with PoolTimeout "
        "until it can (check that the server runs and the conninfo is right)",
        pool.name,
        pool.reconnect_timeout,
    )


class _PoolOptions(TypedDict):
    kwargs: dict[str, Any]
    min_size: int
    max_size: int
    timeout: float
    max_idle: float
    max_waiting: int
    reconnect_timeout: float
    reconnect_failed: Callable[[Any], None]


def _pool_options(settings: Settings) -> _PoolOptions:
    """Return the pool arguments both pools take from the settings."""
    # prepare_threshold=None: never prepare server-side (PgBouncer 1.18 transaction mode
    # hands each transaction to any server connection, where the statement does not exist).
    # Autocommit: psycopg sends no BEGIN of its own; tenant() opens the transaction itself,
    # pipelined with the context (keen_sql.context). The application name is a fallback: one
    # given in the conninfo or PGAPPNAME wins.
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "fallback_application_name": settings.application_name,
    }
    if not settings.prepare:
        kwargs["prepare_threshold"] = None
    return _PoolOptions(
        kwargs=kwargs,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout,
        max_idle=settings.max_idle,
        max_waiting=settings.pool_max_waiting,
        reconnect_timeout=settings.pool_reconnect_timeout,
        reconnect_failed=_reconnect_failed,
    )


class TransactionAborted(psycopg.errors.InFailedSqlTransaction):
    """The block swallowed a database error: the transaction was rolled back, not committed."""


@dataclass(frozen=True, slots=True)
class Health:
    """Result of `Database.health()`: whether a pooled connection answers, and pool figures."""

    ok: bool
    latency_ms: float
    server_version: str | None
    in_recovery: bool | None
    pool_size: int
    pool_available: int
    requests_waiting: int
    error: str | None = None


def _health(
    ok: bool,
    t0: float,
    stats: dict[str, int],
    row: tuple[str, bool] | None = None,
    error: str | None = None,
) -> Health:
    return Health(
        ok=ok,
        latency_ms=(time.perf_counter() - t0) * 1000.0,
        server_version=row[0] if row else None,
        in_recovery=row[1] if row else None,
        pool_size=stats.get("pool_size", 0),
        pool_available=stats.get("pool_available", 0),
        requests_waiting=stats.get("requests_waiting", 0),
        error=error,
    )


P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class _OneTrip:
    """A generated `:one` query run in a transaction of its own, in one round trip: its
    statement, the generated function binding its keyword arguments, and its row factory."""

    name: str
    statement: LiteralString
    rows: models.RowFactory[Any]


def _one_trip(
    name: str,
    statement: LiteralString,
    params: Callable[P, tuple[Any, ...]],
    rows: models.RowFactory[R],
) -> Callable[Concatenate[Database, UUID | str, P], R]:
    """A `Database` method running one generated `:one` query for a tenant in one round trip;
    it takes the generated function's own keyword arguments (`params` binds them)."""
    query = _OneTrip(name, statement, rows)

    def call(self: Database, user_id: UUID | str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        row: R = self._run_one_trip(user_id, query, params(*args, **kwargs))
        return row

    return call


def _one_trip_async(
    name: str,
    statement: LiteralString,
    params: Callable[P, tuple[Any, ...]],
    rows: models.RowFactory[R],
) -> Callable[Concatenate[AsyncDatabase, UUID | str, P], Awaitable[R]]:
    """The async twin of `_one_trip`."""
    query = _OneTrip(name, statement, rows)

    async def call(
        self: AsyncDatabase, user_id: UUID | str, /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        row: R = await self._run_one_trip(user_id, query, params(*args, **kwargs))
        return row

    return call


_DEDUCT_DOC = """Charge tenant `user_id` in a transaction of its own, in one round trip.

        Takes the arguments of ``q.credits.deduct_credits`` (inside ``db.tenant(user_id)``),
        but BEGIN, the context, the call and COMMIT travel in one pipeline: the account's row
        lock is released by the server's COMMIT without waiting for the client, which matters
        when many agents charge one account (bench/credits/REPORT.md, hot). Errors arrive as
        their `keen_sql.errors` class, with nothing written.
        """


def _connection_failed(exc: BaseException) -> bool:
    """Whether `exc` says the connection failed, rather than the server refusing a statement."""
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    # No SQLSTATE: libpq's own errors (closed socket, "cannot exit pipeline mode while busy");
    # class 08 and 57P01-57P03: the server ended or refused the connection.
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _server_error(exc: BaseException) -> psycopg.Error | None:
    """The error the server sent behind `exc`, if any.

    A bound query raises its `keen_sql.errors` class from the server's error; leaving pipeline
    mode on a connection cut after the server's answer raises a connection error whose context
    is that answer. Either way the server's error is found, not the one psycopg raised last.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, psycopg.Error) and not _connection_failed(seen):
            return seen
        if not isinstance(seen, psycopg.Error) and not isinstance(seen.__cause__, psycopg.Error):
            return None
        seen = seen.__cause__ if isinstance(seen.__cause__, psycopg.Error) else seen.__context__
    return None


def _raise_outcome(exc: BaseException, lost: psycopg.Error | None) -> NoReturn:
    """Raise what the caller must see for `exc`, the block's error, mapped to its class.

    `lost`, a connection failure after the server had answered (while leaving the pipeline
    or rolling back), never takes the place of that answer: it is chained as the cause.
    """
    server = _server_error(exc)
    if lost is None or server is None:
        if isinstance(exc, psycopg.Error):
            mapped = translate(exc)
            if mapped is not exc:
                raise mapped from exc
        raise exc
    mapped = translate(server)
    if mapped is server:
        server.add_note(f"the connection failed afterwards: {lost!r}")
        raise server
    raise mapped from lost


def _lost_before_rollback(exc: BaseException) -> psycopg.Error | None:
    """`exc` itself when it is a connection failure hiding the server's answer, else None."""
    if isinstance(exc, psycopg.Error) and _connection_failed(exc):
        return exc if _server_error(exc) is not None else None
    return None


@contextmanager
def _rolled_back_on_error(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Roll back the connection's transaction when the block raises; map database errors.

    A refusal survives a dying connection: when the rollback (or leaving the pipeline)
    fails because the connection is gone, the caller still gets the server's error.
    """
    try:
        yield
    except BaseException as exc:
        lost = _lost_before_rollback(exc)
        if lost is None and not conn.closed:
            try:
                conn.rollback()
            except psycopg.Error as failed:
                lost = failed
        _raise_outcome(exc, lost)


@asynccontextmanager
async def _rolled_back_on_error_async(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """The async twin of `_rolled_back_on_error`."""
    try:
        yield
    except BaseException as exc:
        lost = _lost_before_rollback(exc)
        if lost is None and not conn.closed:
            try:
                await conn.rollback()
            except psycopg.Error as failed:
                lost = failed
        _raise_outcome(exc, lost)


class Database:
    """A pool of connections to the keen database and its tenant transactions.

    ``Database("postgresql://…")`` (a libpq URL or key=value conninfo), ``Database(settings)``
    or ``Database()`` (KEEN_DATABASE_URL, else libpq's PG* environment) opens the pool at
    once; use it as a context manager or call `close()`.
    """

    def __init__(self, settings: Settings | str | None = None) -> None:
        self.settings = settings_for(settings)
        self._context = TenantContext.from_settings(self.settings)
        self.pool = self._new_pool(self.settings.database_url, "keen-sql")

        # Read-only transactions may go to a streaming replica (keen_sql/replica.py); its pool
        # configures and resets its connections as the primary's does.
        self.replica: ReplicaRoute | None = None
        if self.settings.replica_url:
            replica_pool = self._new_pool(self.settings.replica_url, "keen-sql-replica")
            self.replica = ReplicaRoute(replica_pool, self.settings.replica_max_lag_s)

    def _new_pool(self, url: str, name: str) -> ConnectionPool[psycopg.Connection[Any]]:
        return ConnectionPool(
            url,
            configure=self._configure,
            reset=self._reset,
            check=ConnectionPool.check_connection if self.settings.pool_check else None,
            name=name,
            open=True,
            **_pool_options(self.settings),
        )

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(CONFIGURE, _timeout_params(self.settings))

    def _reset(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(DISCARD_ALL, prepare=False)
        # The server holds no prepared statement now; psycopg forgets its own only the first
        # time it sees a DISCARD ALL, so its cache is cleared here (the configure below then
        # sends psycopg's pending DEALLOCATE ALL first, still in this background reset).
        conn._prepared.clear()
        self._configure(conn)

    @contextmanager
    def _read_only(self, user_id: UUID | None) -> Iterator[Queries]:
        context = self._context.statements(user_id)
        with ExitStack() as stack:
            conn = self.replica.begin(stack, context) if self.replica else None
            if conn is not None:
                stack.enter_context(_rolled_back_on_error(conn))
            else:
                conn = stack.enter_context(self.pool.connection())
                stack.enter_context(_rolled_back_on_error(conn))
                with conn.pipeline():
                    conn.execute(BEGIN_READ_ONLY, prepare=False)
                    self._context.set(conn, user_id)
            yield Queries(conn, user_id)
            if conn.info.transaction_status == TransactionStatus.INERROR:
                raise TransactionAborted("a statement failed inside the block: rolled back")
            conn.commit()

    def read_only(self, user_id: UUID | str | None = None) -> AbstractContextManager[Queries]:
        """Open one READ ONLY transaction, on the replica when it is fresh enough.

        With `Settings.replica_url`, the transaction runs on the replica when its replay
        lag is at most `Settings.replica_max_lag_s`, else (or when the replica cannot be
        reached) on the primary; without, on the primary. For reports that tolerate that
        lag: ``usage_report``, ``session_cost_breakdown``, the lists, and — with an analytics
        login (``app_role="keen_analytics"``, no tenant) — ``dashboard_metrics``. A write
        inside raises ``psycopg.errors.ReadOnlySqlTransaction`` (25006) on either server.
        """
        return self._read_only(None if user_id is None else UUID(_tenant_id(user_id)))

    @contextmanager
    def _transaction(self, user_id: UUID | None) -> Iterator[Queries]:
        with self.pool.connection() as conn, _rolled_back_on_error(conn):
            # Autocommit connection: the server transaction is the one BEGIN opens here;
            # pipelined with the context, both travel in one round trip.
            with conn.pipeline():
                conn.execute(BEGIN, prepare=False)
                self._context.set(conn, user_id)
            yield Queries(conn, user_id)
            if conn.info.transaction_status == TransactionStatus.INERROR:
                raise TransactionAborted("a statement failed inside the block: rolled back")
            conn.commit()

    def tenant(self, user_id: UUID | str) -> AbstractContextManager[Queries]:
        """Open one transaction as `keen_app` for tenant `user_id`; yield its `Queries`.

        Commits when the block ends normally, rolls back when it raises; database errors
        leave the block as their `keen_sql.errors` class when they have one.
        """
        return self._transaction(UUID(_tenant_id(user_id)))

    def service(self) -> AbstractContextManager[Queries]:
        """Open one transaction as `keen_app` without tenant: sign-up, login, token lookup."""
        return self._transaction(None)

    def _run_one_trip(self, user_id: UUID | str, query: _OneTrip, params: tuple[Any, ...]) -> Any:
        tenant = UUID(_tenant_id(user_id))
        with self.pool.connection() as conn:
            cur = psycopg.RawCursor(conn, row_factory=query.rows)
            # On an error the server skips everything after the failed statement, COMMIT
            # included, until the pipeline's Sync: the transaction is left to roll back.
            with _rolled_back_on_error(conn), conn.pipeline():
                conn.execute(BEGIN, prepare=False)
                self._context.set(conn, tenant)
                cur.execute(query.statement, params)
                conn.execute(COMMIT, prepare=False)
            row = cur.fetchone()
        if row is None:
            raise models.NoRowError(query.name)
        return row

    deduct_credits = _one_trip(
        "DeductCredits",
        credits.DEDUCT_CREDITS,
        credits.deduct_credits_params,
        credits.DEDUCT_CREDITS_ROWS,
    )
    deduct_credits.__doc__ = _DEDUCT_DOC

    def health(self, timeout: float = 5.0) -> Health:
        """Check that a pooled connection answers; never raises for a database failure."""
        t0 = time.perf_counter()
        try:
            with self.pool.connection(timeout=timeout) as conn:
                row = conn.execute(HEALTH).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            return _health(False, t0, self.pool.get_stats(), error=f"{type(exc).__name__}: {exc}")
        return _health(True, t0, self.pool.get_stats(), row)

    def close(self) -> None:
        """Close the pool (and the replica's) and every connection in them."""
        self.pool.close()
        if self.replica is not None:
            self.replica.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncDatabase:
    """The asyncio twin of `Database`: open it with ``async with`` or `await db.open()`."""

    def __init__(self, settings: Settings | str | None = None) -> None:
        self.settings = settings_for(settings)
        self._context = TenantContext.from_settings(self.settings)
        self.pool = self._new_pool(self.settings.database_url, "keen-sql-async")
        self.replica: AsyncReplicaRoute | None = None
        if self.settings.replica_url:
            replica_pool = self._new_pool(self.settings.replica_url, "keen-sql-async-replica")
            self.replica = AsyncReplicaRoute(replica_pool, self.settings.replica_max_lag_s)

    def _new_pool(self, url: str, name: str) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        return AsyncConnectionPool(
            url,
            configure=self._configure,
            reset=self._reset,
            check=AsyncConnectionPool.check_connection if self.settings.pool_check else None,
            name=name,
            open=False,
            **_pool_options(self.settings),
        )

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(CONFIGURE, _timeout_params(self.settings))

    async def _reset(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(DISCARD_ALL, prepare=False)
        conn._prepared.clear()  # as in Database._reset
        await self._configure(conn)

    async def open(self) -> None:
        """Open the pool, and the replica's (idempotent)."""
        await self.pool.open()
        if self.replica is not None:
            await self.replica.open()

    @asynccontextmanager
    async def _read_only(self, user_id: UUID | None) -> AsyncIterator[AsyncQueries]:
        context = self._context.statements(user_id)
        async with AsyncExitStack() as stack:
            conn = await self.replica.begin(stack, context) if self.replica else None
            if conn is not None:
                await stack.enter_async_context(_rolled_back_on_error_async(conn))
            else:
                conn = await stack.enter_async_context(self.pool.connection())
                await stack.enter_async_context(_rolled_back_on_error_async(conn))
                async with conn.pipeline():
                    await conn.execute(BEGIN_READ_ONLY, prepare=False)
                    await self._context.set_async(conn, user_id)
            yield AsyncQueries(conn, user_id)
            if conn.info.transaction_status == TransactionStatus.INERROR:
                raise TransactionAborted("a statement failed inside the block: rolled back")
            await conn.commit()

    def read_only(
        self, user_id: UUID | str | None = None
    ) -> AbstractAsyncContextManager[AsyncQueries]:
        """The async twin of `Database.read_only`: one READ ONLY transaction, on the replica
        when its lag is within `Settings.replica_max_lag_s`, else on the primary."""
        return self._read_only(None if user_id is None else UUID(_tenant_id(user_id)))

    @asynccontextmanager
    async def _transaction(self, user_id: UUID | None) -> AsyncIterator[AsyncQueries]:
        async with self.pool.connection() as conn, _rolled_back_on_error_async(conn):
            async with conn.pipeline():
                await conn.execute(BEGIN, prepare=False)
                await self._context.set_async(conn, user_id)
            yield AsyncQueries(conn, user_id)
            if conn.info.transaction_status == TransactionStatus.INERROR:
                raise TransactionAborted("a statement failed inside the block: rolled back")
            await conn.commit()

    def tenant(self, user_id: UUID | str) -> AbstractAsyncContextManager[AsyncQueries]:
        """Open one transaction as `keen_app` for tenant `user_id`; yield its `AsyncQueries`."""
        return self._transaction(UUID(_tenant_id(user_id)))

    def service(self) -> AbstractAsyncContextManager[AsyncQueries]:
        """Open one transaction as `keen_app` without tenant."""
        return self._transaction(None)

    async def _run_one_trip(
        self, user_id: UUID | str, query: _OneTrip, params: tuple[Any, ...]
    ) -> Any:
        tenant = UUID(_tenant_id(user_id))
        async with self.pool.connection() as conn:
            cur = psycopg.AsyncRawCursor(conn, row_factory=query.rows)
            async with _rolled_back_on_error_async(conn), conn.pipeline():
                await conn.execute(BEGIN, prepare=False)
                await self._context.set_async(conn, tenant)
                await cur.execute(query.statement, params)
                await conn.execute(COMMIT, prepare=False)
            row = await cur.fetchone()
        if row is None:
            raise models.NoRowError(query.name)
        return row

    deduct_credits = _one_trip_async(
        "DeductCredits",
        credits.DEDUCT_CREDITS,
        credits.deduct_credits_params,
        credits.DEDUCT_CREDITS_ROWS,
    )
    deduct_credits.__doc__ = "The async twin of `Database.deduct_credits`: one round trip."

    async def health(self, timeout: float = 5.0) -> Health:
        """Check that a pooled connection answers; never raises for a database failure."""
        t0 = time.perf_counter()
        try:
            async with self.pool.connection(timeout=timeout) as conn:
                cur = await conn.execute(HEALTH)
                row = await cur.fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            return _health(False, t0, self.pool.get_stats(), error=f"{type(exc).__name__}: {exc}")
        return _health(True, t0, self.pool.get_stats(), row)

    async def close(self) -> None:
        """Close the pool (and the replica's) and every connection in them."""
        await self.pool.close()
        if self.replica is not None:
            await self.replica.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
