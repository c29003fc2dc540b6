"""Live session events: follow users' (or one session's) event streams, resumably.

Every session state change appends a row to ``keen.session_events`` and sends
``NOTIFY keen_events`` with an empty payload: any login that can connect may LISTEN, so the
notification names no tenant, user, session or event. Two ways to turn that into ordered
streams of `SessionEvent` rows:

* `EventHub` (process-wide, for a WebSocket server): ONE direct LISTEN connection per
  process wakes every subscriber; subscribers (`EventHub.subscribe`, one per user or session)
  read their own events through the `Database` pool, many per round trip, so 1,000 online
  users cost one listening connection plus the pool's few.
* `EventListener` (and its asyncio twin `AsyncEventListener`): an `EventHub` of its own with
  one subscription (one direct LISTEN connection, a pool of one for the reads); for scripts
  and simple cases.

Either way:

* it LISTENs first, then reads the log after its cursor (the last event id it yielded),
  so an event committed in between is never missed;
* notifications are only wake-up calls (every tenant's commit wakes every listener): the
  events themselves are read from the log through ``keen.list_session_events`` as
  ``keen_app`` with the tenant context, so RLS guarantees that no other tenant's event is
  ever delivered;
* one user's sessions write events in parallel, without a per-user lock: the log lists only
  events whose transactions are over (ids below the horizon, docs/sessions.md), so
  "id > cursor" is gapless and repeats nothing; committed events waiting for an older
  transaction (``keen.session_events_waiting``) are looked for again after
  ``retry_interval``, since that transaction's end may send no notification;
* after a dropped connection or a server restart it reconnects with jittered exponential
  backoff (each attempt logged on the ``keen_sql.events`` logger), re-LISTENs and catches up
  from its cursor; with no notification it still polls every ``poll_interval`` seconds.

LISTEN needs a direct connection to PostgreSQL. A transaction-mode pooler (PgBouncer
``pool_mode = transaction``) hands each transaction to any server connection, so the
LISTEN is lost: the listener detects a pooler (the backend pid the server reports differs
from the one announced at connect) and raises `DirectConnectionRequired`. The hub's reads
go through the pool, which may sit behind such a pooler.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, LiteralString, Self
from uuid import UUID

import psycopg
from keen_queries import models
from keen_queries import sessions as q
from keen_queries.models import SessionEvent
from psycopg.pq import TransactionStatus

from keen_sql.config import Settings
from keen_sql.database import BEGIN, COMMIT, Database, TransactionAborted
from keen_sql.errors import KeenError, translate

__all__ = [
    "CHANNEL",
    "AsyncEventListener",
    "DirectConnectionRequired",
    "EventHub",
    "EventListener",
    "SessionEvent",
    "Subscription",
]

log = logging.getLogger("keen_sql.events")

CHANNEL = "keen_events"
LISTEN: LiteralString = "LISTEN keen_events"
BACKEND_PID: LiteralString = "SELECT pg_catalog.pg_backend_pid()"


class DirectConnectionRequired(RuntimeError):
    """The listener's connection goes through a pooler, which cannot carry LISTEN."""


@dataclass(slots=True)
class _Stream:
    """One subscription's stream: tenant, optional session, read cursor, reading policy."""

    settings: Settings
    user_id: UUID
    session_id: str | None
    last_event_id: int
    poll_interval: float
    batch_size: int
    max_backoff: float
    reconnect_timeout: float | None
    allow_pooler: bool = False

    def fresh(self, rows: list[SessionEvent]) -> list[SessionEvent]:
        """The rows of a batch past the cursor (the log returns no other; this makes sure)."""
        return [r for r in rows if r.id > self.last_event_id]

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


def _jittered(attempt: int, max_backoff: float) -> float:
    """Seconds before retry `attempt` (1, 2, …): exponential up to max_backoff, half of it
    fixed and half a uniform draw ("equal jitter"), so listeners of many processes that lost
    the server together do not come back in one wave."""
    ceiling = float(min(max_backoff, 0.05 * 2.0**attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _log_retry(what: str, attempt: int, delay: float, exc: BaseException) -> None:
    log.warning("%s lost (attempt %d), retrying in %.3f s: %s", what, attempt, delay, exc)


class EventListener:
    """Yields a tenant's session events in order, resuming after an event id.

    ``EventListener(url, user_id, session_id=None, after_id=None)``; iterate ``events()``
    (forever, or until ``idle_timeout`` seconds pass without an event). ``last_event_id``
    is the cursor to resume from later; ``after_id=None`` (or 0) starts from the first
    event of the log. It is an `EventHub` of its own with one
    subscription: one direct LISTEN connection to `url` and a pool of one connection for the
    reads. The URL must reach PostgreSQL directly (see the module docstring;
    ``allow_pooler=True`` accepts a session-mode pool, which keeps one server connection per
    client); its login must be allowed to SET ROLE keen_app. Reconnects retry for ever, or
    until ``reconnect_timeout`` seconds of failure, when the iterator raises the error.
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
        self.user_id = user_id if isinstance(user_id, UUID) else UUID(user_id)
        self.session_id = session_id
        self._after_id = after_id or 0
        self._settings = replace(
            settings or Settings.from_env(), database_url=conninfo, pool_min_size=1, pool_max_size=1
        )
        self._hub_options: dict[str, Any] = {
            "poll_interval": poll_interval,
            "batch_size": batch_size,
            "max_backoff": max_backoff,
            "reconnect_timeout": reconnect_timeout,
            "allow_pooler": allow_pooler,
        }
        self._db: Database | None = None
        self.hub: EventHub | None = None
        self._sub: Subscription | None = None
        self._past_reconnects = 0  # of the hubs closed before

    @property
    def last_event_id(self) -> int:
        """Id of the last event yielded: pass it as ``after_id`` to resume."""
        return self._sub.last_event_id if self._sub is not None else self._after_id

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the listening connection (None when not connected)."""
        return None if self.hub is None else self.hub.backend_pid

    @property
    def reconnects(self) -> int:
        """How often the listening connection was re-established."""
        return self._past_reconnects + (0 if self.hub is None else self.hub.reconnects)

    def connect(self) -> None:
        """Open the connections, check the listening one is direct, LISTEN, and subscribe."""
        if self.hub is not None:
            return
        db = Database(self._settings)
        hub = EventHub(db, self.conninfo, **self._hub_options)
        try:
            hub.start()
        except BaseException:
            db.close()
            raise
        self._db, self.hub = db, hub
        self._sub = hub.subscribe(self.user_id, session_id=self.session_id, after_id=self._after_id)

    def events(self, *, idle_timeout: float | None = None) -> Iterator[SessionEvent]:
        """Yield events in order, forever or until `idle_timeout` s pass without one."""
        self.connect()
        assert self._sub is not None
        yield from self._sub.events(idle_timeout=idle_timeout)

    def __iter__(self) -> Iterator[SessionEvent]:
        return self.events()

    def close(self) -> None:
        """Close the connections (the cursor is kept: iterating again reconnects)."""
        self._after_id = self.last_event_id
        if self.hub is not None:
            self._past_reconnects += self.hub.reconnects
            self.hub.close()
        if self._db is not None:
            self._db.close()
        self.hub, self._db, self._sub = None, None, None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncEventListener:
    """The asyncio twin of `EventListener`: ``async for event in listener.events(): …``.

    The same hub of its own (its threads do the waiting and the reads); the consumer waits
    on its event loop.
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
        self._sync = EventListener(
            conninfo,
            user_id,
            session_id=session_id,
            after_id=after_id,
            poll_interval=poll_interval,
            batch_size=batch_size,
            max_backoff=max_backoff,
            reconnect_timeout=reconnect_timeout,
            allow_pooler=allow_pooler,
            settings=settings,
        )

    @property
    def last_event_id(self) -> int:
        """Id of the last event yielded: pass it as ``after_id`` to resume."""
        return self._sync.last_event_id

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the listening connection (None when not connected)."""
        return self._sync.backend_pid

    @property
    def reconnects(self) -> int:
        """How often the listening connection was re-established."""
        return self._sync.reconnects

    async def connect(self) -> None:
        """Open the connections, check the listening one is direct, LISTEN, and subscribe."""
        await asyncio.get_running_loop().run_in_executor(None, self._sync.connect)

    async def events(self, *, idle_timeout: float | None = None) -> AsyncIterator[SessionEvent]:
        """Yield events in order, forever or until `idle_timeout` s pass without one."""
        await self.connect()
        sub = self._sync._sub
        assert sub is not None
        async for event in sub.aevents(idle_timeout=idle_timeout):
            yield event

    def __aiter__(self) -> AsyncIterator[SessionEvent]:
        return self.events()

    async def close(self) -> None:
        """Close the connections (the cursor is kept: iterating again reconnects)."""
        await asyncio.get_running_loop().run_in_executor(None, self._sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# ===== the process-wide hub ====================================================================

_END = object()  # queued to wake a consumer when its subscription ends
_EVENT_ROWS = models.row_factory(SessionEvent)
# What one subscription's read gives: the rows and the waiting flag, or its domain error.
_ReadResult = tuple[list[SessionEvent], bool] | BaseException


class Subscription:
    """One user's (or one session's) stream inside an `EventHub`.

    ``events()`` yields `SessionEvent` rows in order (blocking; ``idle_timeout`` ends it), and
    ``aevents()`` is the same for asyncio consumers. ``last_event_id`` is the cursor of the
    last event handed out: subscribe again with ``after_id=last_event_id`` to resume. An
    error of this stream's reads (e.g. `NotFound` for another tenant's session) is raised by
    the iterator and ends the subscription.
    """

    def __init__(self, hub: EventHub, stream: _Stream) -> None:
        self._hub = hub
        self._stream = stream  # the read cursor: what the hub has queued
        self.last_event_id = stream.last_event_id
        self._queue: deque[object] = deque()
        self._ready = threading.Condition()
        # asyncio consumers waiting in aevents(): woken from the hub's thread, thread-safely.
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._error: BaseException | None = None
        self.closed = False

    @property
    def user_id(self) -> UUID:
        """The tenant whose events this subscription reads."""
        return self._stream.user_id

    def _wake(self) -> None:
        """Wake every consumer (call with `_ready` held)."""
        self._ready.notify_all()
        for loop, event in self._async_waiters:
            loop.call_soon_threadsafe(event.set)

    def _push(self, events: list[SessionEvent]) -> None:
        with self._ready:
            self._queue.extend(events)
            self._wake()

    def _fail(self, exc: BaseException) -> None:
        with self._ready:
            self._error = exc
            self._queue.append(_END)
            self._wake()

    def get(self, timeout: float | None = None) -> SessionEvent | None:
        """The next event, or None when none arrives within `timeout` s (or it was closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._queue:
                if self.closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._ready.wait(remaining)
            item = self._queue.popleft()
        if item is _END:
            self.closed = True
            if self._error is not None:
                raise self._error
            return None
        assert isinstance(item, SessionEvent)
        self.last_event_id = item.id
        return item

    def events(self, *, idle_timeout: float | None = None) -> Iterator[SessionEvent]:
        """Yield events in order, forever or until `idle_timeout` s pass without one."""
        while (event := self.get(idle_timeout)) is not None:
            yield event

    async def aevents(self, *, idle_timeout: float | None = None) -> AsyncIterator[SessionEvent]:
        """`events()` for asyncio: waits on the loop (no thread per consumer)."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._ready:
            self._async_waiters.append(waiter)
        try:
            while True:
                waiter[1].clear()
                event = self.get(timeout=0)
                if event is not None:
                    yield event
                    continue
                if self.closed:
                    return
                try:
                    await asyncio.wait_for(waiter[1].wait(), idle_timeout)
                except TimeoutError:
                    if not self._queue:
                        return
        finally:
            with self._ready:
                self._async_waiters.remove(waiter)

    def close(self) -> None:
        """Stop reading this stream (the hub forgets it) and wake a waiting consumer."""
        self._hub._unsubscribe(self)
        with self._ready:
            self.closed = True
            self._queue.append(_END)
            self._wake()


class EventHub:
    """One LISTEN connection per process, waking per-user subscribers that read via the pool.

    ``EventHub(db)`` listens on ``db``'s database (or ``listen_conninfo``, which must reach
    PostgreSQL directly); ``hub.subscribe(user_id, session_id=None, after_id=None)`` returns a
    `Subscription` (``after_id=None`` or 0: from the first event of the log). Any
    notification (they name nobody) or ``poll_interval`` marks every subscription to be read;
    a reader thread then reads them through the pool in pipelines of ``pipeline_size`` tenant
    transactions (BEGIN, the tenant context, the log after the cursor, COMMIT), so many users
    cost a few round trips, and notifications arriving while a round runs fold into the next.
    Use it as a context manager, or ``start()`` and ``close()``.
    """

    def __init__(
        self,
        db: Database,
        listen_conninfo: str | None = None,
        *,
        poll_interval: float = 5.0,
        retry_interval: float = 0.05,
        batch_size: int = 500,
        pipeline_size: int = 100,
        max_backoff: float = 2.0,
        allow_pooler: bool = False,
        reconnect_timeout: float | None = None,
    ) -> None:
        self.db = db
        self.reconnect_timeout = reconnect_timeout
        self.conninfo = listen_conninfo or db.settings.database_url
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        self.batch_size = batch_size
        self.pipeline_size = pipeline_size
        self.max_backoff = max_backoff
        self.allow_pooler = allow_pooler
        self._subs: dict[int, Subscription] = {}
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, db.settings.pool_max_size), thread_name_prefix="keen-events-read"
        )
        self.conn: psycopg.Connection[Any] | None = None
        self.reconnects = 0
        self.rounds = 0
        self.delivered = 0

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(
        self, user_id: UUID | str, *, session_id: str | None = None, after_id: int | None = None
    ) -> Subscription:
        """Follow `user_id`'s events (or one session's, by external id) after `after_id`."""
        stream = _Stream(
            settings=self.db.settings,
            user_id=user_id if isinstance(user_id, UUID) else UUID(user_id),
            session_id=session_id,
            last_event_id=after_id or 0,
            poll_interval=self.poll_interval,
            batch_size=self.batch_size,
            max_backoff=self.max_backoff,
            reconnect_timeout=self.reconnect_timeout,
        )
        sub = Subscription(self, stream)
        with self._lock:
            self._subs[id(sub)] = sub
        self._dirty.set()  # catch up from after_id at once
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.pop(id(sub), None)

    @property
    def subscriptions(self) -> int:
        """How many subscriptions the hub reads for."""
        return len(self._subs)

    # -- the listening connection ---------------------------------------------------------
    @property
    def backend_pid(self) -> int | None:
        """The server pid of the listening connection (None when not connected)."""
        return None if self.conn is None or self.conn.closed else self.conn.info.backend_pid

    def _connect(self) -> None:
        conn = psycopg.connect(
            self.conninfo,
            autocommit=True,
            fallback_application_name=self.db.settings.application_name,
        )
        try:
            row = conn.execute(BACKEND_PID).fetchone()
            check = _Stream(self.db.settings, UUID(int=0), None, 0, 1.0, 1, 1.0, None)
            check.allow_pooler = self.allow_pooler
            check.check_direct(conn.info.backend_pid, row[0] if row else -1)
            conn.execute(LISTEN)
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def _give_up(self, since: float | None, exc: BaseException) -> bool:
        """After reconnect_timeout s of failures: end every subscription with `exc`, stop."""
        if since is None or self.reconnect_timeout is None:
            return False
        if time.monotonic() - since <= self.reconnect_timeout:
            return False
        with self._lock:
            subs = list(self._subs.values())
            self._subs.clear()
        for sub in subs:
            sub._fail(exc)
        self._stop.set()
        return True

    def _listen(self) -> None:
        """Listener thread: wake the reader on every notification and every poll_interval."""
        attempt = 0
        failing_since: float | None = None
        last_wake = time.monotonic()
        while not self._stop.is_set():
            conn = self.conn
            try:
                if conn is None or conn.closed:
                    self._connect()
                    self.reconnects += 1
                    attempt, failing_since = 0, None
                    self._dirty.set()  # catch up on what the gap may have hidden
                    continue
                # Short waits, so close() is quick; a wake-up at least every poll_interval.
                notified = False
                for _ in conn.notifies(timeout=min(0.25, self.poll_interval), stop_after=1):
                    notified = True
                if notified or time.monotonic() - last_wake >= self.poll_interval:
                    last_wake = time.monotonic()
                    self._dirty.set()
            except psycopg.OperationalError as exc:
                if self.conn is not None:
                    self.conn.close()
                failing_since = failing_since or time.monotonic()
                if self._give_up(failing_since, exc):
                    return
                attempt += 1
                delay = _jittered(attempt, self.max_backoff)
                _log_retry("event hub LISTEN connection", attempt, delay, exc)
                self._stop.wait(delay)

    # -- reading through the pool ---------------------------------------------------------
    def _read_round(self) -> bool:
        """Read every subscription once; True when some has more to read at once."""
        with self._lock:
            subs = list(self._subs.values())
        again = False
        pending = False
        chunks = [
            subs[start : start + self.pipeline_size]
            for start in range(0, len(subs), self.pipeline_size)
        ]
        # The chunks in parallel, one pooled connection each (at most the pool's size).
        for chunk, results in zip(
            chunks, self._executor.map(self._read_chunk, chunks), strict=True
        ):
            for sub, result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException):
                    self._unsubscribe(sub)
                    sub._fail(result)
                    continue
                rows, waiting = result
                fresh = sub._stream.fresh(rows)
                if fresh:
                    sub._stream.last_event_id = fresh[-1].id
                    sub._push(fresh)
                    self.delivered += len(fresh)
                again = again or len(rows) >= self.batch_size
                pending = pending or waiting
        self.rounds += 1
        if pending and not again:
            # Committed events wait for an older transaction, whose end may notify nobody.
            threading.Timer(self.retry_interval, self._dirty.set).start()
        return again

    def _read_chunk(self, chunk: list[Subscription]) -> list[_ReadResult]:
        """One pooled connection, one pipeline: each subscription's read in its own transaction.

        BEGIN, the tenant context, the log after the cursor, the waiting flag and COMMIT per
        subscription, all sent before any answer is awaited. A domain error (rare: a
        subscription to a session that is not the tenant's) stops the pipeline; the chunk is
        then read again one transaction at a time, so the error reaches its subscription only.
        """
        context = self.db._context  # the role and timeouts (keen_sql.context)
        with self.db.pool.connection() as conn:
            try:
                cursors = []
                with conn.pipeline():
                    for sub in chunk:
                        s = sub._stream
                        rows = psycopg.RawCursor(conn, row_factory=_EVENT_ROWS)
                        flag = psycopg.RawCursor(conn)
                        conn.execute(BEGIN, prepare=False)
                        context.set(conn, s.user_id)
                        rows.execute(
                            q.LIST_SESSION_EVENTS, (s.last_event_id, s.session_id, s.batch_size)
                        )
                        flag.execute(q.SESSION_EVENTS_WAITING, (s.session_id,))
                        conn.execute(COMMIT, prepare=False)
                        cursors.append((rows, flag))
                out: list[_ReadResult] = []
                for rows, flag in cursors:
                    waiting = flag.fetchone()
                    out.append((rows.fetchall(), bool(waiting and waiting[0])))
                return out
            except psycopg.OperationalError:
                raise
            except psycopg.Error:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()
        return [self._read_one(sub) for sub in chunk]

    def _read_one(self, sub: Subscription) -> _ReadResult:
        """One subscription's read in a tenant transaction of its own; a domain error returned."""
        s = sub._stream
        try:
            with self.db.tenant(s.user_id) as t:
                rows = t.call(
                    q.list_session_events,
                    after_id=s.last_event_id,
                    session_id=s.session_id,
                    limit=s.batch_size,
                )
                waiting = t.call(q.session_events_waiting, session_id=s.session_id)
            return rows, waiting
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            return translate(exc)
        except (KeenError, TransactionAborted) as exc:
            return exc

    def _read(self) -> None:
        """Reader thread: one round per wake-up; a lost connection is retried with backoff."""
        attempt = 0
        failing_since: float | None = None
        while not self._stop.is_set():
            if not self._dirty.wait(self.poll_interval):
                continue
            self._dirty.clear()
            try:
                if self._read_round():
                    self._dirty.set()
                attempt, failing_since = 0, None
            except psycopg.OperationalError as exc:
                failing_since = failing_since or time.monotonic()
                if self._give_up(failing_since, exc):
                    return
                attempt += 1
                delay = _jittered(attempt, self.max_backoff)
                _log_retry("event hub read", attempt, delay, exc)
                self._dirty.set()
                self._stop.wait(delay)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Connect the LISTEN connection (raising `DirectConnectionRequired` behind a
        transaction pooler) and start the listener and reader threads."""
        if self._threads:
            return self
        self._connect()
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._listen, name="keen-events-listen", daemon=True),
            threading.Thread(target=self._read, name="keen-events-read", daemon=True),
        ]
        for th in self._threads:
            th.start()
        self._dirty.set()
        return self

    def close(self) -> None:
        """Stop the threads, close the LISTEN connection and end every subscription."""
        self._stop.set()
        self._dirty.set()
        for th in self._threads:
            th.join(timeout=10)
        self._threads = []
        self._executor.shutdown(wait=True)
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        with self._lock:
            subs = list(self._subs.values())
            self._subs.clear()
        for sub in subs:
            with sub._ready:
                sub.closed = True
                sub._queue.append(_END)
                sub._wake()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
