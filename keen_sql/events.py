"""Live session events: follow a user's (or one session's) event stream, resumably.

Every session state change appends a row to ``keen.session_events`` and sends
``NOTIFY keen_events`` with an empty payload: any login that can connect may LISTEN, so the
notification names no tenant, user, session or event. `EventListener` (and its asyncio twin
`AsyncEventListener`) turns that into an ordered stream of `SessionEvent` rows:

* it LISTENs first, then reads the log after its cursor (the last event id it yielded),
  so an event committed in between is never missed;
* notifications are only wake-up calls (every tenant's commit wakes every listener): the
  events themselves are read from the log
  through ``keen.list_session_events`` as ``keen_app`` with the tenant context, so RLS
  guarantees that no other tenant's event is ever delivered;
* a user's event ids follow commit order (``keen.lock_event_stream``), so "id > cursor" is
  gapless and repeats nothing: after a dropped connection or a server restart the listener
  reconnects, re-LISTENs and catches up from its cursor;
* with no notification it still polls the log every ``poll_interval`` seconds.

LISTEN needs a direct connection to PostgreSQL. A transaction-mode pooler (PgBouncer
``pool_mode = transaction``) hands each transaction to any server connection, so the
LISTEN is lost: the listener detects a pooler (the backend pid the server reports differs
from the one announced at connect) and raises `DirectConnectionRequired`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, LiteralString, Self
from uuid import UUID

import psycopg
from keen_queries import sessions as q
from keen_queries.models import SessionEvent

from keen_sql.config import Settings
from keen_sql.context import SET_CONTEXT, TenantContext
from keen_sql.errors import translate

__all__ = [
    "CHANNEL",
    "AsyncEventListener",
    "DirectConnectionRequired",
    "EventListener",
    "SessionEvent",
]

CHANNEL = "keen_events"
LISTEN: LiteralString = "LISTEN keen_events"
BACKEND_PID: LiteralString = "SELECT pg_catalog.pg_backend_pid()"


class DirectConnectionRequired(RuntimeError):
    """The listener's connection goes through a pooler, which cannot carry LISTEN."""


@dataclass(slots=True)
class _Stream:
    """What the sync and async listeners share: the subscription, the cursor, the policy."""

    settings: Settings
    user_id: UUID
    session_id: str | None
    last_event_id: int
    poll_interval: float
    batch_size: int
    max_backoff: float
    reconnect_timeout: float | None
    allow_pooler: bool = False

    def context(self) -> tuple[str, str, str, str]:
        """Parameters of SET_CONTEXT: keen_app, this tenant, the timeouts."""
        return TenantContext.from_settings(self.settings).params(self.user_id)

    def wants(self, payload: str) -> bool:
        """Whether a notification is a wake-up to read the log (its payload is always empty)."""
        return payload == ""

    def fresh(self, rows: list[SessionEvent]) -> list[SessionEvent]:
        """The rows of a batch past the cursor (the log returns no other; this makes sure)."""
        return [r for r in rows if r.id > self.last_event_id]

    def delivered(self, event: SessionEvent) -> SessionEvent:
        """Move the cursor to `event` as it is handed out (a consumer may stop mid-batch)."""
        self.last_event_id = event.id
        return event

    def wait_time(self, idle_since: float, idle_timeout: float | None) -> float:
        """How long to wait for a notification now; <= 0 when the idle timeout has passed."""
        if idle_timeout is None:
            return self.poll_interval
        return min(self.poll_interval, idle_since + idle_timeout - time.monotonic())

    def check_direct(self, announced_pid: int, server_pid: int) -> None:
        """Raise DirectConnectionRequired when a pooler sits between us and the server."""
        if announced_pid != server_pid and not self.allow_pooler:
            raise DirectConnectionRequired(
                "LISTEN needs a direct connection to PostgreSQL: this one goes through a "
                f"connection pooler (backend pid {announced_pid} announced, {server_pid} "
                "serving). A transaction-mode pooler such as PgBouncer with "
                "pool_mode=transaction cannot carry LISTEN/NOTIFY; point the event listener "
                "at the server itself (behind a session-mode pool, pass allow_pooler=True)."
            )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before reconnection attempt `attempt` (1, 2, …)."""
        return float(min(self.max_backoff, 0.05 * 2**attempt))

    def give_up(self, started: float) -> bool:
        """Whether reconnecting has lasted longer than reconnect_timeout."""
        return self.reconnect_timeout is not None and (
            time.monotonic() - started > self.reconnect_timeout
        )


def _raise_unless_disconnect(exc: psycopg.Error, closed: bool) -> None:
    """Re-raise `exc` (as its keen_sql.errors class) unless the connection was lost."""
    # A terminated backend (57P01), a server shutting down, a broken socket: reconnect.
    if isinstance(exc, psycopg.OperationalError) or closed:
        return
    mapped = translate(exc)
    if mapped is exc:
        raise exc
    raise mapped from exc


class EventListener:
    """Yields a tenant's session events in order, resuming after an event id.

    ``EventListener(url, user_id, session_id=None, after_id=None)``; iterate ``events()``
    (forever, or until ``idle_timeout`` seconds pass without an event). ``last_event_id``
    is the cursor to resume from later; ``after_id=None`` (or 0) starts from the first
    event of the log. The URL must reach PostgreSQL directly (see the
    module docstring; ``allow_pooler=True`` accepts a session-mode pool, which keeps one
    server connection per client); its login must be allowed to SET ROLE keen_app.
    """

    def __init__(
        self,
        conninfo: str,
        user_id: UUID | str,
        *,
        session_id: str | None = None,
        after_id: int | None = None,
        poll_interval: float = 5.0,
        batch_size: int = 500,
        max_backoff: float = 2.0,
        reconnect_timeout: float | None = None,
        allow_pooler: bool = False,
        settings: Settings | None = None,
    ) -> None:
        self.conninfo = conninfo
        self._stream = _Stream(
            settings=settings or Settings.from_env(),
            user_id=user_id if isinstance(user_id, UUID) else UUID(user_id),
            session_id=session_id,
            last_event_id=after_id or 0,
            poll_interval=poll_interval,
            batch_size=batch_size,
            max_backoff=max_backoff,
            reconnect_timeout=reconnect_timeout,
            allow_pooler=allow_pooler,
        )
        self.conn: psycopg.Connection[Any] | None = None
        self.reconnects = 0

    @property
    def last_event_id(self) -> int:
        """Id of the last event yielded: pass it as ``after_id`` to resume."""
        return self._stream.last_event_id

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the listening connection (None when not connected)."""
        return None if self.conn is None or self.conn.closed else self.conn.info.backend_pid

    def connect(self) -> None:
        """Open the connection, check it is direct, and LISTEN."""
        self.close()
        conn = psycopg.connect(
            self.conninfo,
            autocommit=True,
            fallback_application_name=self._stream.settings.application_name,
        )
        try:
            row = conn.execute(BACKEND_PID).fetchone()
            self._stream.check_direct(conn.info.backend_pid, row[0] if row else -1)
            conn.execute(LISTEN)
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def _reconnect(self) -> None:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                self.connect()
                self.reconnects += 1
                return
            except psycopg.OperationalError:
                if self._stream.give_up(started):
                    raise
                time.sleep(self._stream.backoff(attempt))

    def _fetch(self, conn: psycopg.Connection[Any]) -> list[SessionEvent]:
        s = self._stream
        with conn.transaction():
            conn.execute(SET_CONTEXT, s.context())
            rows = q.list_session_events(
                conn, after_id=s.last_event_id, session_id=s.session_id, limit=s.batch_size
            )
        return s.fresh(rows)

    def _wait(self, conn: psycopg.Connection[Any], timeout: float) -> None:
        """Wait up to `timeout` s for a notification of this stream, then drain the rest."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            wanted = False
            for n in conn.notifies(timeout=remaining, stop_after=1):
                wanted = wanted or self._stream.wants(n.payload)
            if wanted:
                break
        for _ in conn.notifies(timeout=0):
            pass

    def events(self, *, idle_timeout: float | None = None) -> Iterator[SessionEvent]:
        """Yield events in order, forever or until `idle_timeout` s pass without one."""
        s = self._stream
        idle_since = time.monotonic()
        while True:
            if self.conn is None:
                self.connect()
            elif self.conn.closed:
                self._reconnect()
            conn = self.conn
            assert conn is not None
            try:
                batch = self._fetch(conn)
                if not batch:
                    wait = s.wait_time(idle_since, idle_timeout)
                    if wait <= 0:
                        return
                    self._wait(conn, wait)
                    continue
            except psycopg.Error as exc:
                _raise_unless_disconnect(exc, conn.closed)
                conn.close()
                continue
            for event in batch:
                yield s.delivered(event)
            idle_since = time.monotonic()

    def __iter__(self) -> Iterator[SessionEvent]:
        return self.events()

    def close(self) -> None:
        """Close the connection (the cursor is kept: iterating again reconnects)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncEventListener:
    """The asyncio twin of `EventListener`: ``async for event in listener.events(): …``."""

    def __init__(
        self,
        conninfo: str,
        user_id: UUID | str,
        *,
        session_id: str | None = None,
        after_id: int | None = None,
        poll_interval: float = 5.0,
        batch_size: int = 500,
        max_backoff: float = 2.0,
        reconnect_timeout: float | None = None,
        allow_pooler: bool = False,
        settings: Settings | None = None,
    ) -> None:
        self.conninfo = conninfo
        self._stream = _Stream(
            settings=settings or Settings.from_env(),
            user_id=user_id if isinstance(user_id, UUID) else UUID(user_id),
            session_id=session_id,
            last_event_id=after_id or 0,
            poll_interval=poll_interval,
            batch_size=batch_size,
            max_backoff=max_backoff,
            reconnect_timeout=reconnect_timeout,
            allow_pooler=allow_pooler,
        )
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.reconnects = 0

    @property
    def last_event_id(self) -> int:
        """Id of the last event yielded: pass it as ``after_id`` to resume."""
        return self._stream.last_event_id

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the listening connection (None when not connected)."""
        return None if self.conn is None or self.conn.closed else self.conn.info.backend_pid

    async def connect(self) -> None:
        """Open the connection, check it is direct, and LISTEN."""
        await self.close()
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            fallback_application_name=self._stream.settings.application_name,
        )
        try:
            cur = await conn.execute(BACKEND_PID)
            row = await cur.fetchone()
            self._stream.check_direct(conn.info.backend_pid, row[0] if row else -1)
            await conn.execute(LISTEN)
        except BaseException:
            await conn.close()
            raise
        self.conn = conn

    async def _reconnect(self) -> None:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.connect()
                self.reconnects += 1
                return
            except psycopg.OperationalError:
                if self._stream.give_up(started):
                    raise
                await asyncio.sleep(self._stream.backoff(attempt))

    async def _fetch(self, conn: psycopg.AsyncConnection[Any]) -> list[SessionEvent]:
        s = self._stream
        async with conn.transaction():
            await conn.execute(SET_CONTEXT, s.context())
            rows = await q.list_session_events_async(
                conn, after_id=s.last_event_id, session_id=s.session_id, limit=s.batch_size
            )
        return s.fresh(rows)

    async def _wait(self, conn: psycopg.AsyncConnection[Any], timeout: float) -> None:
        """Wait up to `timeout` s for a notification of this stream, then drain the rest."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            wanted = False
            async for n in conn.notifies(timeout=remaining, stop_after=1):
                wanted = wanted or self._stream.wants(n.payload)
            if wanted:
                break
        async for _ in conn.notifies(timeout=0):
            pass

    async def events(self, *, idle_timeout: float | None = None) -> AsyncIterator[SessionEvent]:
        """Yield events in order, forever or until `idle_timeout` s pass without one."""
        s = self._stream
        idle_since = time.monotonic()
        while True:
            if self.conn is None:
                await self.connect()
            elif self.conn.closed:
                await self._reconnect()
            conn = self.conn
            assert conn is not None
            try:
                batch = await self._fetch(conn)
                if not batch:
                    wait = s.wait_time(idle_since, idle_timeout)
                    if wait <= 0:
                        return
                    await self._wait(conn, wait)
                    continue
            except psycopg.Error as exc:
                _raise_unless_disconnect(exc, conn.closed)
                await conn.close()
                continue
            for event in batch:
                yield s.delivered(event)
            idle_since = time.monotonic()

    def __aiter__(self) -> AsyncIterator[SessionEvent]:
        return self.events()

    async def close(self) -> None:
        """Close the connection (the cursor is kept: iterating again reconnects)."""
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
