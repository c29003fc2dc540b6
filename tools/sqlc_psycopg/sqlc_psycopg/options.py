"""Plugin options (`codegen[].options` of sqlc.yaml), validated strictly."""

from __future__ import annotations

import ast
import builtins
import json
from dataclasses import dataclass
from typing import Any

from sqlc_psycopg import pgtypes
from sqlc_psycopg.errors import PluginError

_TYPE_NODES = (
    ast.Expression,
    ast.Attribute,
    ast.Subscript,
    ast.Tuple,
    ast.List,
    ast.BinOp,
    ast.BitOr,
    ast.Load,
    ast.Constant,
)
_TOP_KEYS = {"emit_sync", "emit_async", "rows", "overrides"}
ROW_FORMS = ("tuple", "named")
_OVERRIDE_KEYS = {"db_type", "column", "query", "param", "py_type", "nullable"}


@dataclass(frozen=True, slots=True)
class PyType:
    """A Python type expression given by the user, and the modules it needs imported."""

    annotation: str
    imports: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, where: str) -> PyType:
        """Check `text` is a type expression of dotted names; collect the modules to import.

        `decimal.Decimal` imports `decimal`; `dict[str, typing.Any]` imports `typing`; bare
        names must be builtins (`int`, `str`, `list[int]`).
        """
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise PluginError(f"{where}: py_type {text!r} is not a Python type: {exc.msg}") from exc
        imports: set[str] = set()
        qualifiers = {
            id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)
        }  # Name nodes that are the module part of a dotted name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and id(node) not in qualifiers:
                parts: list[str] = []
                inner: ast.expr = node.value
                while isinstance(inner, ast.Attribute):
                    parts.append(inner.attr)
                    inner = inner.value
                if not isinstance(inner, ast.Name):
                    raise PluginError(f"{where}: py_type {text!r} is not a plain type expression")
                imports.add(".".join([inner.id, *reversed(parts)]))
            elif isinstance(node, ast.Name):
                if id(node) not in qualifiers and not hasattr(builtins, node.id):
                    raise PluginError(
                        f"{where}: py_type {text!r}: {node.id!r} is not a builtin; "
                        "write it with its module (e.g. 'decimal.Decimal')"
                    )
            elif not isinstance(node, _TYPE_NODES):
                raise PluginError(f"{where}: py_type {text!r} is not a plain type expression")
        # `a.b.C` needs `import a.b`; a module-level name like `mod.C` needs `import mod`.
        return cls(text.strip(), tuple(sorted(i for i in imports if i)))


@dataclass(frozen=True, slots=True)
class Override:
    """One entry of `overrides`: what it matches and what it sets."""

    index: int
    db_type: tuple[str, str] | None
    column: tuple[str, str, str] | None
    query: str
    name: str
    is_param: bool
    py_type: PyType | None
    nullable: bool | None

    def describe(self) -> str:
        """Return how the option is named in messages (`overrides[2]`)."""
        return f"overrides[{self.index}]"


@dataclass(frozen=True, slots=True)
class Options:
    """All plugin options."""

    emit_sync: bool = True
    emit_async: bool = True
    rows: str = "tuple"  # "tuple": psycopg's own tuples, typed; "named": NamedTuple classes
    overrides: tuple[Override, ...] = ()


def _bool(data: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise PluginError(f"{where}: option {key!r} must be true or false, not {value!r}")
    return value


def _override(index: int, data: Any) -> Override:
    where = f"plugin option overrides[{index}]"
    if not isinstance(data, dict):
        raise PluginError(f"{where}: must be a mapping, not {data!r}")
    unknown = sorted(set(data) - _OVERRIDE_KEYS)
    if unknown:
        raise PluginError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("db_type", "column", "query", "param", "py_type"):
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            raise PluginError(f"{where}: {key!r} must be a non-empty string")
    if "nullable" in data and not isinstance(data["nullable"], bool):
        raise PluginError(f"{where}: 'nullable' must be true or false")
    if "py_type" not in data and "nullable" not in data:
        raise PluginError(f"{where}: set 'py_type', 'nullable' or both")
    db_type = column = None
    query = str(data.get("query", ""))
    name = ""
    if query:
        if "db_type" in data or ("column" in data) == ("param" in data):
            raise PluginError(f"{where}: with 'query' give exactly one of 'column' or 'param'")
        name = str(data.get("column") or data.get("param"))
    elif "db_type" in data:
        if "column" in data or "param" in data:
            raise PluginError(f"{where}: give 'db_type' or 'column', not both")
        schema, type_name, dims = pgtypes.split_name("", str(data["db_type"]))
        if dims:
            raise PluginError(f"{where}: 'db_type' names the element type, without []")
        db_type = (schema, type_name)
    elif "column" in data:
        if "param" in data:
            raise PluginError(f"{where}: 'param' needs 'query'")
        parts = str(data["column"]).split(".")
        if len(parts) not in (2, 3) or not all(parts):
            raise PluginError(f"{where}: 'column' must be 'table.column' or 'schema.table.column'")
        column = ("", parts[0], parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])
    else:
        raise PluginError(f"{where}: give 'db_type', 'column', or 'query' with 'column'/'param'")
    py_type = PyType.parse(str(data["py_type"]), where) if "py_type" in data else None
    return Override(
        index=index,
        db_type=db_type,
        column=column,
        query=query,
        name=name,
        is_param="param" in data,
        py_type=py_type,
        nullable=data.get("nullable"),
    )


def parse(raw: bytes) -> Options:
    """Parse and validate the options sqlc passes (JSON; empty means all defaults)."""
    if not raw.strip():
        return Options()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PluginError(f"plugin options are not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PluginError("plugin options must be a mapping")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise PluginError(
            f"unknown plugin option(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    overrides = data.get("overrides", [])
    if not isinstance(overrides, list):
        raise PluginError("plugin option 'overrides' must be a list")
    emit_sync = _bool(data, "emit_sync", True, "plugin options")
    emit_async = _bool(data, "emit_async", True, "plugin options")
    if not (emit_sync or emit_async):
        raise PluginError("plugin options: emit_sync and emit_async cannot both be false")
    rows = data.get("rows", "tuple")
    if rows not in ROW_FORMS:
        raise PluginError(
            f"plugin options: 'rows' must be one of {', '.join(ROW_FORMS)}, not {rows!r}"
        )
    return Options(
        emit_sync=emit_sync,
        emit_async=emit_async,
        rows=rows,
        overrides=tuple(_override(i, o) for i, o in enumerate(overrides)),
    )
