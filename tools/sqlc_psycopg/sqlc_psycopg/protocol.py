"""The part of sqlc's codegen request this plugin reads, parsed from sqlc's JSON form.

sqlc (`process` plugins with `format: json`) writes the `GenerateRequest` protobuf message as
JSON with snake_case field names and bytes as base64; the answer is a `GenerateResponse` in the
same form. Only the fields the plugin uses are parsed; unknown fields are ignored.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

JsonObject = Mapping[str, Any]


def _obj(data: Any) -> JsonObject:
    return cast(JsonObject, data) if isinstance(data, Mapping) else {}


def _list(data: Any) -> list[Any]:
    return list(data) if isinstance(data, list) else []


def _str(data: JsonObject, key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _int(data: JsonObject, key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) else 0


@dataclass(frozen=True, slots=True)
class Identifier:
    """A possibly schema-qualified name (`schema` may be empty, `name` may hold a dot)."""

    schema: str
    name: str

    @classmethod
    def parse(cls, data: Any) -> Identifier | None:
        """Return the identifier of a JSON object, or None when it is absent."""
        if not isinstance(data, Mapping):
            return None
        return cls(_str(data, "schema"), _str(data, "name"))


@dataclass(frozen=True, slots=True)
class Column:
    """A table column, a result column or the column behind a parameter."""

    name: str
    not_null: bool
    is_array: bool
    array_dims: int
    comment: str
    type: Identifier
    table: Identifier | None
    original_name: str
    is_named_param: bool
    is_func_call: bool
    is_sqlc_slice: bool
    embed_table: Identifier | None

    @classmethod
    def parse(cls, data: Any) -> Column:
        """Parse a `Column` message."""
        obj = _obj(data)
        return cls(
            name=_str(obj, "name"),
            not_null=bool(obj.get("not_null")),
            is_array=bool(obj.get("is_array")),
            array_dims=_int(obj, "array_dims"),
            comment=_str(obj, "comment"),
            type=Identifier.parse(obj.get("type")) or Identifier("", ""),
            table=Identifier.parse(obj.get("table")),
            original_name=_str(obj, "original_name"),
            is_named_param=bool(obj.get("is_named_param")),
            is_func_call=bool(obj.get("is_func_call")),
            is_sqlc_slice=bool(obj.get("is_sqlc_slice")),
            embed_table=Identifier.parse(obj.get("embed_table")),
        )

    @property
    def dims(self) -> int:
        """Array depth: 0 for a scalar (sqlc sets `is_array` without dims for some casts)."""
        if self.array_dims:
            return self.array_dims
        return 1 if self.is_array else 0


@dataclass(frozen=True, slots=True)
class Parameter:
    """A query parameter `$number`."""

    number: int
    column: Column


@dataclass(frozen=True, slots=True)
class Query:
    """One `-- name: Name :cmd` query of a query file."""

    name: str
    cmd: str
    text: str
    filename: str
    comments: tuple[str, ...]
    columns: tuple[Column, ...]
    params: tuple[Parameter, ...]
    insert_into_table: Identifier | None


@dataclass(frozen=True, slots=True)
class Table:
    """A table (or view) of the catalog."""

    rel: Identifier
    columns: tuple[Column, ...]
    comment: str


@dataclass(frozen=True, slots=True)
class Enum:
    """A PostgreSQL enum type of the catalog."""

    schema: str
    name: str
    values: tuple[str, ...]
    comment: str


@dataclass(frozen=True, slots=True)
class CompositeType:
    """A composite type of the catalog (sqlc gives only its name and comment)."""

    schema: str
    name: str
    comment: str


@dataclass(frozen=True, slots=True)
class Schema:
    """One schema of the catalog."""

    name: str
    comment: str
    tables: tuple[Table, ...]
    enums: tuple[Enum, ...]
    composite_types: tuple[CompositeType, ...]


@dataclass(frozen=True, slots=True)
class Request:
    """The codegen request."""

    sqlc_version: str
    default_schema: str
    schemas: tuple[Schema, ...]
    queries: tuple[Query, ...]
    schema_paths: tuple[str, ...]
    query_paths: tuple[str, ...]
    plugin_options: bytes

    @classmethod
    def from_json(cls, text: str | bytes) -> Request:
        """Parse the JSON text sqlc writes on the plugin's standard input."""
        return cls.parse(json.loads(text))

    @classmethod
    def parse(cls, data: Any) -> Request:
        """Parse a decoded `GenerateRequest`."""
        obj = _obj(data)
        catalog = _obj(obj.get("catalog"))
        settings = _obj(obj.get("settings"))
        return cls(
            sqlc_version=_str(obj, "sqlc_version"),
            default_schema=_str(catalog, "default_schema") or "public",
            schemas=tuple(_parse_schema(s) for s in _list(catalog.get("schemas"))),
            queries=tuple(_parse_query(q) for q in _list(obj.get("queries"))),
            schema_paths=tuple(str(p) for p in _list(settings.get("schema"))),
            query_paths=tuple(str(p) for p in _list(settings.get("queries"))),
            plugin_options=base64.b64decode(_str(obj, "plugin_options")),
        )


def _parse_schema(data: Any) -> Schema:
    obj = _obj(data)
    name = _str(obj, "name")
    return Schema(
        name=name,
        comment=_str(obj, "comment"),
        tables=tuple(
            Table(
                rel=Identifier.parse(_obj(t).get("rel")) or Identifier("", ""),
                columns=tuple(Column.parse(c) for c in _list(_obj(t).get("columns"))),
                comment=_str(_obj(t), "comment"),
            )
            for t in _list(obj.get("tables"))
        ),
        enums=tuple(
            Enum(
                schema=name,
                name=_str(_obj(e), "name"),
                values=tuple(str(v) for v in _list(_obj(e).get("vals"))),
                comment=_str(_obj(e), "comment"),
            )
            for e in _list(obj.get("enums"))
        ),
        composite_types=tuple(
            CompositeType(schema=name, name=_str(_obj(c), "name"), comment=_str(_obj(c), "comment"))
            for c in _list(obj.get("composite_types"))
        ),
    )


def _parse_query(data: Any) -> Query:
    obj = _obj(data)
    return Query(
        name=_str(obj, "name"),
        cmd=_str(obj, "cmd"),
        text=_str(obj, "text"),
        filename=_str(obj, "filename"),
        comments=tuple(str(c) for c in _list(obj.get("comments"))),
        columns=tuple(Column.parse(c) for c in _list(obj.get("columns"))),
        params=tuple(
            Parameter(number=_int(_obj(p), "number"), column=Column.parse(_obj(p).get("column")))
            for p in _list(obj.get("params"))
        ),
        insert_into_table=Identifier.parse(obj.get("insert_into_table")),
    )


def encode_response(files: Mapping[str, str]) -> str:
    """Return the JSON `GenerateResponse` carrying `files` (name → text), names sorted."""
    return json.dumps(
        {
            "files": [
                {"name": name, "contents": base64.b64encode(files[name].encode()).decode("ascii")}
                for name in sorted(files)
            ]
        }
    )
