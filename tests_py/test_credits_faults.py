"""A refusal survives a dying connection (issue 16, item 4).

When the server has refused a charge (KE001) and the connection dies before keen_sql is done
with the transaction (leaving the pipeline, rolling back), the caller still gets the refusal
the server sent, as its `keen_sql.errors` class, with the connection error chained as its
cause, never `AdminShutdown` or "cannot exit pipeline mode while busy" in its place; and
nothing is written. Both faults are real: a backend terminated by the server
(pg_terminate_backend), and a TCP connection cut by a proxy right after the server's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from keen_dev import ledger
from psycopg.conninfo import conninfo_to_dict

from keen_sql import errors
from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database


class CuttingProxy:
    """A TCP proxy to the cluster's Unix socket that can cut a connection after an error.

    Client bytes go through as they come; the server's are read message by message (type
    byte, length). Once `arm()`ed, after an ErrorResponse carrying SQLSTATE `code` and the
    ReadyForQuery that ends its pipeline, both sockets are closed: the client has the whole
    answer, and the connection is gone when keen_sql rolls back, as when a network or a
    pooler drops the link at that moment.
    """

    def __init__(self, unix_path: str, code: str) -> None:
        self.unix_path = unix_path
        self.marker = b"C" + code.encode() + b"\x00"
        self.armed = threading.Event()
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed.set()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.unix_path)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._messages, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def _messages(self, server: socket.socket, client: socket.socket) -> None:
        buffer = b""
        refused = False
        try:
            while data := server.recv(65536):
                buffer += data
                while len(buffer) >= 5:
                    size = struct.unpack("!I", buffer[1:5])[0] + 1
                    if len(buffer) < size:
                        break
                    message, buffer = buffer[:size], buffer[size:]
                    client.sendall(message)
                    if self.armed.is_set() and message[:1] == b"E" and self.marker in message:
                        refused = True
                    elif refused and message[:1] == b"Z":
                        self.armed.clear()
                        self.cuts += 1
                        raise ConnectionAbortedError("cut after the server's refusal")
        except OSError:
            pass
        finally:
            for s in (server, client):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@pytest.fixture
def user(db_url: str) -> uuid.UUID:
    """A tenant holding 1.00 credit."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        user_id = ledger.make_user(conn)
        with ledger.as_tenant(conn, user_id):
            ledger.post(conn, Decimal("1"), "funding")
    return user_id


@pytest.fixture
def proxy(db_url: str) -> Iterator[CuttingProxy]:
    info = conninfo_to_dict(db_url)
    cutting = CuttingProxy(f"{info['host']}/.s.PGSQL.{info['port']}", "KE001")
    yield cutting
    cutting.close()


def _proxied(db_url: str, proxy: CuttingProxy) -> Settings:
    info = conninfo_to_dict(db_url)
    url = (
        f"postgresql://{info['user']}@127.0.0.1:{proxy.port}/{info['dbname']}"
        "?sslmode=disable&gssencmode=disable"
    )
    return Settings(database_url=url, pool_min_size=1, pool_max_size=1)


def _ledger_size(db_url: str, user_id: uuid.UUID) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM keen.credit_transactions WHERE user_id = %s", (user_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _terminate(db_url: str, pid: int) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
    assert row == (True,), f"backend {pid} was not terminated"


def _assert_refusal_with_lost_connection(exc: BaseException) -> None:
    assert isinstance(exc, errors.InsufficientCredits) and exc.sqlstate == "KE001"
    assert isinstance(exc.__cause__, psycopg.OperationalError), exc.__cause__
    # The server's own error is in the chain too, behind the connection failure.
    chain: list[BaseException] = []
    seen: BaseException | None = exc.__cause__
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert any(isinstance(e, psycopg.Error) and e.sqlstate == "KE001" for e in chain), chain


def test_refusal_in_one_round_trip_survives_a_cut_connection_as_KE001(
    db_url: str, user: uuid.UUID, proxy: CuttingProxy
) -> None:
    before = _ledger_size(db_url, user)
    with Database(_proxied(db_url, proxy)) as db:
        proxy.arm()
        with pytest.raises(errors.InsufficientCredits) as info:
            db.deduct_credits(user, amount=Decimal("5"))
        assert proxy.cuts == 1, "the proxy never saw the refusal"
        _assert_refusal_with_lost_connection(info.value)
        # The pool replaces the dead connection: the next charge goes through.
        assert db.deduct_credits(user, amount=Decimal("0.25")).balance_after == Decimal("0.75")
    assert _ledger_size(db_url, user) == before + 1


def test_refusal_in_a_tenant_block_survives_a_terminated_backend_as_KE001(
    db_url: str, user: uuid.UUID
) -> None:
    before = _ledger_size(db_url, user)
    settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=1)
    with Database(settings) as db:
        with pytest.raises(errors.InsufficientCredits) as info, db.tenant(user) as q:
            pid = q.conn.info.backend_pid
            try:
                ledger.spend(q, Decimal("5"), "too-much")
            finally:
                # The backend dies between the refusal and keen_sql's rollback.
                _terminate(db_url, pid)
        _assert_refusal_with_lost_connection(info.value)
        with db.tenant(user) as q:
            row = q.credits.credit_balance()
        assert row is not None and row.current_balance == Decimal("1")
    assert _ledger_size(db_url, user) == before


def test_async_refusal_survives_a_terminated_backend_as_KE001(db_url: str, user: uuid.UUID) -> None:
    before = _ledger_size(db_url, user)

    async def scenario() -> BaseException:
        settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=1)
        async with AsyncDatabase(settings) as db:
            try:
                async with db.tenant(user) as q:
                    pid = q.conn.info.backend_pid
                    try:
                        await q.credits.deduct_credits(
                            amount=Decimal("5"),
                            session_id=None,
                            description=None,
                            idempotency_key=None,
                        )
                    finally:
                        await asyncio.to_thread(_terminate, db_url, pid)
            except BaseException as exc:  # the test inspects what arrived
                return exc
        raise AssertionError("the charge was not refused")

    _assert_refusal_with_lost_connection(asyncio.run(scenario()))
    assert _ledger_size(db_url, user) == before
