"""PostgreSQL type names and the Python types psycopg 3 loads them as (text result format).

sqlc spells one type several ways (`int4`, `integer`, `pg_catalog.int4`, `serial`), so every
name is first brought to PostgreSQL's internal spelling (`canonical`), then looked up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Spellings of the SQL standard and of sqlc mapped to PostgreSQL's internal type names.
_ALIASES = {
    "int": "int4",
    "integer": "int4",
    "serial": "int4",
    "serial4": "int4",
    "smallint": "int2",
    "smallserial": "int2",
    "serial2": "int2",
    "bigint": "int8",
    "bigserial": "int8",
    "serial8": "int8",
    "real": "float4",
    "float": "float8",
    "double precision": "float8",
    "decimal": "numeric",
    "boolean": "bool",
    "character varying": "varchar",
    "character": "bpchar",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "time with time zone": "timetz",
    "time without time zone": "time",
    "bit varying": "varbit",
}

_INET = (
    "ipaddress.IPv4Address | ipaddress.IPv6Address"
    " | ipaddress.IPv4Interface | ipaddress.IPv6Interface"
)
_RANGE = "psycopg.types.range.Range"
_MULTIRANGE = "psycopg.types.multirange.Multirange"

# Internal name → (annotation, module to import). psycopg returns the text of any type it has
# no loader for as `str`; those types are listed with `str` so that they need no override.
_SCALARS: dict[str, tuple[str, str]] = {
    "bool": ("bool", ""),
    "int2": ("int", ""),
    "int4": ("int", ""),
    "int8": ("int", ""),
    "oid": ("int", ""),
    "float4": ("float", ""),
    "float8": ("float", ""),
    "numeric": ("decimal.Decimal", "decimal"),
    "bytea": ("bytes", ""),
    "uuid": ("uuid.UUID", "uuid"),
    "date": ("datetime.date", "datetime"),
    "time": ("datetime.time", "datetime"),
    "timetz": ("datetime.time", "datetime"),
    "timestamp": ("datetime.datetime", "datetime"),
    "timestamptz": ("datetime.datetime", "datetime"),
    "interval": ("datetime.timedelta", "datetime"),
    "inet": (_INET, "ipaddress"),
    "cidr": ("ipaddress.IPv4Network | ipaddress.IPv6Network", "ipaddress"),
    "int4range": (f"{_RANGE}[int]", "psycopg.types.range"),
    "int8range": (f"{_RANGE}[int]", "psycopg.types.range"),
    "numrange": (f"{_RANGE}[decimal.Decimal]", "psycopg.types.range decimal"),
    "daterange": (f"{_RANGE}[datetime.date]", "psycopg.types.range datetime"),
    "tsrange": (f"{_RANGE}[datetime.datetime]", "psycopg.types.range datetime"),
    "tstzrange": (f"{_RANGE}[datetime.datetime]", "psycopg.types.range datetime"),
    "int4multirange": (f"{_MULTIRANGE}[int]", "psycopg.types.multirange"),
    "int8multirange": (f"{_MULTIRANGE}[int]", "psycopg.types.multirange"),
    "nummultirange": (f"{_MULTIRANGE}[decimal.Decimal]", "psycopg.types.multirange decimal"),
    "datemultirange": (f"{_MULTIRANGE}[datetime.date]", "psycopg.types.multirange datetime"),
    "tsmultirange": (f"{_MULTIRANGE}[datetime.datetime]", "psycopg.types.multirange datetime"),
    "tstzmultirange": (f"{_MULTIRANGE}[datetime.datetime]", "psycopg.types.multirange datetime"),
    "record": ("tuple[typing.Any, ...]", "typing"),
}
_TEXT = (
    "text varchar bpchar char name citext xml money bit varbit tsvector tsquery macaddr macaddr8"
    " point line lseg box path polygon circle pg_lsn regclass regtype regproc regprocedure"
    " regoper regoperator regnamespace regrole regconfig regdictionary xid xid8 cid tid"
    " txid_snapshot pg_snapshot unknown void"
)
_SCALARS.update({name: ("str", "") for name in _TEXT.split()})
JSON_TYPES = {"json": "Json", "jsonb": "Jsonb"}
# Types sqlc reports when its inference failed: no Python type can be right for them.
POLYMORPHIC = {"any", "anyelement", "anyarray", "anynonarray", "anyenum", "anyrange", ""}


@dataclass(frozen=True, slots=True)
class Scalar:
    """The Python annotation of a built-in type and the modules it needs."""

    annotation: str
    imports: tuple[str, ...]


def split_name(schema: str, name: str) -> tuple[str, str, int]:
    """Return (schema, name, extra array dims) of a type as sqlc spells it.

    `pg_catalog.int8` → ("pg_catalog", "int8", 0); `numeric(10,2)` → ("", "numeric", 0);
    `text[]` → ("", "text", 1). The name keeps its case (user types may be quoted).
    """
    dims = 0
    name = re.sub(r"\s*\([^)]*\)", "", name.strip())
    while name.endswith("[]"):
        name, dims = name[:-2].rstrip(), dims + 1
    if not schema and "." in name and not name.startswith('"'):
        schema, name = name.split(".", 1)
    return schema.strip('"'), name.strip('"'), dims


def canonical(name: str) -> str:
    """Return PostgreSQL's internal name for a built-in type name in any spelling."""
    lower = " ".join(name.lower().split())
    return _ALIASES.get(lower, lower)


def builtin(schema: str, name: str) -> Scalar | None:
    """Return the Python type of a built-in type, or None when it is not one."""
    if schema not in ("", "pg_catalog"):
        return None
    found = _SCALARS.get(canonical(name))
    if found is None:
        return None
    return Scalar(found[0], tuple(found[1].split()))


def json_kind(schema: str, name: str) -> str | None:
    """Return `Json` or `Jsonb` (the psycopg wrapper of parameters) for json types."""
    if schema not in ("", "pg_catalog"):
        return None
    return JSON_TYPES.get(canonical(name))
