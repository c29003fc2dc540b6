"""What a corpus case's check.py uses: compare a generated call with raw psycopg.

Each case runs its generated functions through `Harness.check`, which first runs the same
statement with plain psycopg on a second connection (rolled back when it writes), then the
generated call, and asserts that both return the same values and that every value of every
row has the Python type the generated annotations promise.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import sys
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Literal, LiteralString, TypeVar

import psycopg
from psycopg.types.multirange import Multirange
from psycopg.types.range import Range

T = TypeVar("T")
Fetch = Literal[
    "one", "many", "none", "rowcount", "status", "batchexec", "batchone", "batchmany", "copy"
]
# Exact classes: isinstance would let a bool pass for an int or a datetime for a date.
_EXACT = {int, float, str, bytes, bool, datetime.date, datetime.datetime}


def conforms(value: object, hint: object, where: str = "value") -> None:
    """Assert that `value` is of the (evaluated) annotation `hint`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return
    # JsonValue refers to itself: "JsonValue" in a runtime alias, a ForwardRef once evaluated.
    if hint == "JsonValue" or (
        isinstance(hint, typing.ForwardRef) and hint.__forward_arg__ == "JsonValue"
    ):
        assert _is_json(value), f"{where}: {value!r} is not a JSON value"
        return
    if hint is None or hint is type(None):
        assert value is None, f"{where}: {value!r} is not None"
        return
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                conforms(value, arg, where)
            except AssertionError as exc:
                errors.append(str(exc))
            else:
                return
        raise AssertionError(f"{where}: {value!r} matches none of {hint}: {errors}")
    if origin is list:
        assert type(value) is list, f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            conforms(item, args[0], f"{where}[{i}]")
        return
    if origin is dict:
        assert type(value) is dict, f"{where}: {value!r} is not a dict"
        for k, v in value.items():
            conforms(k, args[0], f"{where} key")
            conforms(v, args[1], f"{where}[{k!r}]")
        return
    if origin is tuple:
        assert isinstance(value, tuple), f"{where}: {value!r} is not a tuple"
        if args[-1:] == (Ellipsis,):
            for i, item in enumerate(value):
                conforms(item, args[0], f"{where}[{i}]")
            return
        # A row of the `rows: tuple` form: psycopg's own tuple, not a subclass built per row.
        assert type(value) is tuple, f"{where}: {value!r} is a {type(value).__name__}, not tuple"
        assert len(value) == len(args), f"{where}: {len(value)} values for {len(args)} types"
        for i, (item, arg) in enumerate(zip(value, args, strict=True)):
            conforms(item, arg, f"{where}[{i}]")
        return
    if origin in (Range, Multirange):
        assert isinstance(value, origin), f"{where}: {value!r} is not a {origin.__name__}"
        return
    assert isinstance(hint, type), f"{where}: unexpected annotation {hint!r}"
    if hint in _EXACT:
        assert type(value) is hint, f"{where}: {value!r} is a {type(value).__name__}, not {hint}"
    else:
        assert isinstance(value, hint), f"{where}: {value!r} is not a {hint.__name__}"
    if issubclass(hint, tuple) and hasattr(hint, "_fields"):
        row_conforms(value)


def _is_json(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def row_conforms(row: object, where: str = "row") -> None:
    """Assert every field of a generated NamedTuple row has its annotated type."""
    cls = type(row)
    module = sys.modules[cls.__module__]
    package = module.__name__.rsplit(".", 1)[0]
    models = sys.modules.get(f"{package}.models", module)
    local = {"JsonValue": models.JsonValue, "JsonParam": models.JsonParam}
    hints = typing.get_type_hints(cls, globalns=vars(module), localns=local)
    for name, hint in hints.items():
        conforms(getattr(row, name), hint, f"{where}.{name}")


def check_result(value: object, fetch: Fetch, row: Any = None) -> None:
    """Check the rows inside a generated function's result against their annotations.

    NamedTuple rows carry their field types; rows of the `rows: tuple` form are plain tuples
    whose type (the generated `…Row` alias) the case passes as `row`.
    """
    if fetch not in ("one", "many", "batchone", "batchmany"):
        return
    if row is not None:
        optional, many = row | None, types.GenericAlias(list, (row,))
        shape = {
            "one": optional,
            "many": many,
            "batchone": types.GenericAlias(list, (optional,)),
            "batchmany": types.GenericAlias(list, (many,)),
        }[fetch]
        conforms(value, shape, "result")
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        row_conforms(value)
    elif isinstance(value, list):
        for item in value:
            check_result(item, fetch)
    else:
        assert not isinstance(value, tuple), f"{value!r}: a tuple row; pass its type as row="


def flatten(row: object) -> tuple[Any, ...]:
    """A row with its sqlc.embed fields spread out, as raw psycopg returns it."""
    assert isinstance(row, tuple)
    out: list[Any] = []
    for value in row:
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            out.extend(value)
        else:
            out.append(value)
    return tuple(out)


def _normalize(value: object, embeds: bool) -> object:
    if isinstance(value, list):
        return [_normalize(v, embeds) for v in value]
    if embeds and isinstance(value, tuple):
        return flatten(value)
    return value


@dataclasses.dataclass
class Harness:
    """Sync connections of a case: `conn` for generated calls, `raw` for plain psycopg."""

    conn: psycopg.Connection[Any]
    raw: psycopg.Connection[Any]
    checks: int = 0

    def execute(self, statement: LiteralString, params: Sequence[Any] = ()) -> None:
        """Run setup SQL (committed) on the raw connection."""
        with psycopg.RawCursor(self.raw) as cur:
            cur.execute(statement, params)
        self.raw.commit()

    def fetch(self, statement: LiteralString, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a statement through raw psycopg (committed)."""
        with psycopg.RawCursor(self.raw) as cur:
            cur.execute(statement, params)
            rows = cur.fetchall() if cur.pgresult and cur.description else []
        self.raw.commit()
        return rows

    def expected(self, statement: LiteralString, params: Any, fetch: Fetch, mutates: bool) -> Any:
        """What raw psycopg returns for the statement (rolled back when it writes)."""
        with psycopg.RawCursor(self.raw) as cur:
            try:
                return _raw_run(cur, statement, params, fetch)
            finally:
                if mutates:
                    self.raw.rollback()
                else:
                    self.raw.commit()

    def check(
        self,
        call: Callable[[], T],
        statement: LiteralString,
        params: Any = (),
        *,
        fetch: Fetch = "many",
        mutates: bool = False,
        embeds: bool = False,
        row: Any = None,
        value: Any = None,
    ) -> T:
        """Run raw psycopg, then the generated `call`; assert same values and promised types."""
        want = self.expected(statement, params, fetch, mutates)
        got = call()
        self.conn.commit()
        compare(got, want, fetch, embeds, row, value)
        self.checks += 1
        return got


@dataclasses.dataclass
class AsyncHarness:
    """The async twin of `Harness`: generated calls on `conn`, raw psycopg on `raw`."""

    conn: psycopg.AsyncConnection[Any]
    raw: psycopg.AsyncConnection[Any]
    checks: int = 0

    async def check(
        self,
        call: Callable[[], Awaitable[T]],
        statement: LiteralString,
        params: Any = (),
        *,
        fetch: Fetch = "many",
        mutates: bool = False,
        embeds: bool = False,
        row: Any = None,
        value: Any = None,
    ) -> T:
        """Run raw psycopg, then the generated coroutine; assert same values and types."""
        async with psycopg.AsyncRawCursor(self.raw) as cur:
            try:
                want = await _raw_run_async(cur, statement, params, fetch)
            finally:
                await (self.raw.rollback() if mutates else self.raw.commit())
        got = await call()
        await self.conn.commit()
        compare(got, want, fetch, embeds, row, value)
        self.checks += 1
        return got


def compare(
    got: object, want: object, fetch: Fetch, embeds: bool, row: Any = None, value: Any = None
) -> None:
    """Assert a generated result equals raw psycopg's and has the promised types.

    `value`: the query has one column, whose type it is: the generated function returns the
    value of that column where raw psycopg returns a one-value row.
    """
    if value is not None:
        want = _unwrap(want, fetch)
        shape = {"one": value, "many": types.GenericAlias(list, (value,))}.get(fetch)
        if shape is None:
            shape = types.GenericAlias(
                list, ({"batchone": value}.get(fetch) or types.GenericAlias(list, (value,)),)
            )
        conforms(got, shape, "result")
        assert _equal(got, want), f"generated {got!r} != raw {want!r}"
        return
    if fetch == "status":
        assert isinstance(got, psycopg.RawCursor | psycopg.AsyncRawCursor)
        got = (got.rowcount, got.statusmessage)
    check_result(got, fetch, row)
    assert _equal(_normalize(got, embeds), want), f"generated {got!r} != raw {want!r}"
    if isinstance(got, list) and isinstance(want, list):
        for g, w in zip(got, want, strict=True):
            _same_types(_normalize(g, embeds), w)
    elif got is not None and want is not None:
        _same_types(_normalize(got, embeds), want)


def _unwrap(want: Any, fetch: Fetch) -> Any:
    """Raw psycopg's one-value rows as the values a single-column query returns."""
    if fetch == "one":
        assert want is None or len(want) == 1, want
        return None if want is None else want[0]
    if fetch in ("many", "batchone"):
        return [_unwrap(w, "one") for w in want]
    return [[_unwrap(w, "one") for w in ws] for ws in want]


def _equal(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (numeric 'NaN' and float nan come back as such)."""
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal | float) and isinstance(b, Decimal | float) and a != a and b != b:
        return True
    return a == b


def _same_types(got: object, want: object) -> None:
    """Equal values can differ in type (1 == 1.0 == True); raw and generated must not."""
    both_tuples = isinstance(got, tuple) and isinstance(want, tuple)
    if both_tuples or (isinstance(got, list) and isinstance(want, list)):
        assert isinstance(got, tuple | list) and isinstance(want, tuple | list)
        for g, w in zip(got, want, strict=True):
            _same_types(g, w)
    else:
        assert type(got) is type(want), f"{got!r}: {type(got)} vs raw {type(want)}"
        if isinstance(got, enum.Enum):
            assert got is want


def _raw_run(cur: psycopg.RawCursor[Any], sql: LiteralString, params: Any, fetch: Fetch) -> Any:
    if fetch == "copy":
        with cur.copy(sql) as copy:
            for row in params:
                copy.write_row(row)
        return cur.rowcount
    if fetch.startswith("batch"):
        cur.executemany(sql, params, returning=fetch != "batchexec")
        if fetch == "batchone":
            return [c.fetchone() for c in cur.results()]
        if fetch == "batchmany":
            return [c.fetchall() for c in cur.results()]
        return None
    cur.execute(sql, params)
    return _raw_fetch(cur, fetch)


async def _raw_run_async(
    cur: psycopg.AsyncRawCursor[Any], sql: LiteralString, params: Any, fetch: Fetch
) -> Any:
    if fetch == "copy":
        async with cur.copy(sql) as copy:
            for row in params:
                await copy.write_row(row)
        return cur.rowcount
    if fetch.startswith("batch"):
        await cur.executemany(sql, params, returning=fetch != "batchexec")
        if fetch == "batchone":
            return [await c.fetchone() async for c in cur.results()]
        if fetch == "batchmany":
            return [await c.fetchall() async for c in cur.results()]
        return None
    await cur.execute(sql, params)
    if fetch == "one":
        return await cur.fetchone()
    if fetch == "many":
        return await cur.fetchall()
    return _raw_fetch(cur, fetch)


def _raw_fetch(cur: psycopg.RawCursor[Any] | psycopg.AsyncRawCursor[Any], fetch: Fetch) -> Any:
    if fetch == "rowcount":
        return cur.rowcount
    if fetch == "status":
        return (cur.rowcount, cur.statusmessage)
    if fetch == "none":
        return None
    assert isinstance(cur, psycopg.RawCursor)
    return cur.fetchone() if fetch == "one" else cur.fetchall()


async def collect(rows: AsyncIterator[T]) -> list[T]:
    """The items of an async iterator (a generated `…_iter_async` stream) as a list."""
    return [row async for row in rows]
