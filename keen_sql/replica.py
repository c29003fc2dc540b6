"""Read-only transactions on a streaming replica, with a stated maximum lag.

`Database.read_only()` asks the `ReplicaRoute` of its `Database` for a replica connection
(`AsyncDatabase.read_only()` its `AsyncReplicaRoute`).
The route opens the transaction there (``BEGIN READ ONLY``), and in the same round trip
measures how far the replica's replay is behind:

- 0 when everything the replica has received is replayed and its WAL receiver runs;
- else the time since the last replayed commit (``pg_last_xact_replay_timestamp()``), an
  upper bound of the staleness while WAL waits to be replayed;
- unknown (treated as too far) when no WAL receiver runs, no commit was replayed yet since
  start, or the server is not in recovery at all (a promoted or misconfigured "replica").

Within the bound the caller's block runs on the replica; beyond it, or when the replica
cannot be reached within `WAIT_S`, the route hands back None and the block runs on the
primary. An unreachable replica is left alone for `RETRY_S` before it is tried again, so a
dead replica costs reports one short wait, not one per call.

What the bound does not cover: WAL the primary has written but not yet sent (a transport
delay, milliseconds on a healthy network; a connection that stalls without closing lasts
until `wal_receiver_timeout`, 60 s by default, ends it). A caller that must read its own
write of a moment ago uses `db.tenant()` on the primary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack, ExitStack
from typing import Any, LiteralString

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from keen_sql.context import Statement

__all__ = ["RETRY_S", "WAIT_S", "AsyncReplicaRoute", "ReplicaRoute"]

log = logging.getLogger("keen_sql.replica")

WAIT_S = 1.0  # at most this long for a replica connection before reading the primary
RETRY_S = 5.0  # an unreachable replica is not tried again for this long

BEGIN_READ_ONLY: LiteralString = "BEGIN READ ONLY"
# In recovery; a WAL receiver running; the replay lag in seconds (NULL: unknown).
REPLICA_LAG: LiteralString = (
    "SELECT pg_catalog.pg_is_in_recovery(),"
    " EXISTS (SELECT FROM pg_catalog.pg_stat_wal_receiver),"
    " CASE WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn()"
    "      THEN 0::float8"
    "      ELSE extract(epoch FROM pg_catalog.clock_timestamp()"
    "                              - pg_catalog.pg_last_xact_replay_timestamp())::float8"
    " END"
)


class _Route:
    """What both routes share: the bound, the counters and the decision.

    Attributes:
        max_lag_s: the largest replay lag (seconds) a read accepts.
        last_lag_s: the lag measured by the latest attempt (None: unknown or unreachable).
        reads, fallbacks: how many reads the replica served, and how many went to the primary.
    """

    def __init__(self, max_lag_s: float) -> None:
        self.max_lag_s = max_lag_s
        self.last_lag_s: float | None = None
        self.reads = 0
        self.fallbacks = 0
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _fallback(self, reason: str, down: bool = False) -> None:
        with self._lock:
            self.fallbacks += 1
            if down:
                self._down_until = time.monotonic() + RETRY_S
        log.info("read-only transaction on the primary: %s", reason)

    def _resting(self) -> bool:
        """True (and counted) while an unreachable replica is left alone."""
        if time.monotonic() < self._down_until:
            self._fallback("replica unreachable a moment ago")
            return True
        return False

    def _unreachable(self, exc: BaseException) -> None:
        self.last_lag_s = None
        self._fallback(f"replica unreachable ({type(exc).__name__})", down=True)

    def _fresh(self, row: tuple[Any, ...] | None) -> bool:
        """Judge REPLICA_LAG's row: True (counted as a replica read) when within the bound."""
        in_recovery, receiving, lag = row if row else (False, False, None)
        self.last_lag_s = lag if in_recovery and receiving else None
        if self.last_lag_s is None:
            why = "not a streaming replica" if not (in_recovery and receiving) else "lag unknown"
            self._fallback(why)
            return False
        if self.last_lag_s > self.max_lag_s:
            self._fallback(f"lag {self.last_lag_s:.3f} s above {self.max_lag_s:g} s")
            return False
        with self._lock:
            self.reads += 1
        return True


class ReplicaRoute(_Route):
    """A pool on the replica and the rule that decides whether a read may go there."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]], max_lag_s: float) -> None:
        super().__init__(max_lag_s)
        self.pool = pool

    def begin(
        self, stack: ExitStack, context: Sequence[Statement]
    ) -> psycopg.Connection[Any] | None:
        """Open a read-only transaction on the replica when it is fresh enough.

        Returns the connection inside the open transaction (`context` statements run after
        the lag check, in the same round trip), its return to the pool pushed on `stack`;
        or None when the read belongs on the primary.
        """
        if self._resting():
            return None
        attempt = ExitStack()
        try:
            conn = attempt.enter_context(self.pool.connection(timeout=WAIT_S))
            with conn.pipeline():
                conn.execute(BEGIN_READ_ONLY, prepare=False)
                cur = conn.execute(REPLICA_LAG, prepare=False)
                for sql, params in context:
                    conn.execute(sql, params, prepare=False)
            row = cur.fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            attempt.close()
            self._unreachable(exc)
            return None
        if not self._fresh(row):
            conn.rollback()
            attempt.close()
            return None
        stack.enter_context(attempt)
        return conn

    def close(self) -> None:
        """Close the replica's pool."""
        self.pool.close()


class AsyncReplicaRoute(_Route):
    """The asyncio twin of `ReplicaRoute` (`AsyncDatabase.read_only()`)."""

    def __init__(
        self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]], max_lag_s: float
    ) -> None:
        super().__init__(max_lag_s)
        self.pool = pool

    async def begin(
        self, stack: AsyncExitStack, context: Sequence[Statement]
    ) -> psycopg.AsyncConnection[Any] | None:
        """The async twin of `ReplicaRoute.begin`."""
        if self._resting():
            return None
        attempt = AsyncExitStack()
        try:
            conn = await attempt.enter_async_context(self.pool.connection(timeout=WAIT_S))
            async with conn.pipeline():
                await conn.execute(BEGIN_READ_ONLY, prepare=False)
                cur = await conn.execute(REPLICA_LAG, prepare=False)
                for sql, params in context:
                    await conn.execute(sql, params, prepare=False)
            row = await cur.fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            await attempt.aclose()
            self._unreachable(exc)
            return None
        if not self._fresh(row):
            await conn.rollback()
            await attempt.aclose()
            return None
        await stack.enter_async_context(attempt)
        return conn

    async def open(self) -> None:
        """Open the replica's pool."""
        await self.pool.open()

    async def close(self) -> None:
        """Close the replica's pool."""
        await self.pool.close()
