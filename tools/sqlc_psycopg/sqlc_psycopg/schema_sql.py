"""What sqlc's catalog leaves out: composite type fields and domain base types.

sqlc passes composite types by name only and domains not at all, so the plugin reads the
`CREATE TYPE … AS (…)` and `CREATE DOMAIN` statements of the schema files itself. The scan is
lexical (comments, strings, dollar quotes and quoted identifiers are understood), which is all
these two statements need.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line>--[^\n]*)
  | (?P<block>/\*)
  | (?P<dollar>\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<string>[EeBbXxUu]?'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<number>\d+(?:\.\d*)?)
  | (?P<punct>::|.)
    """,
    re.VERBOSE | re.DOTALL,
)
_T = TypeVar("_T")
_DOMAIN_END = {"default", "constraint", "not", "null", "check", "collate"}


@dataclass(frozen=True, slots=True)
class TypeName:
    """A type as written in DDL: optional schema, name (normalised spelling kept), array depth."""

    schema: str
    name: str
    dims: int


@dataclass(slots=True)
class SchemaTypes:
    """Composite fields and domain base types found in the schema files."""

    composites: dict[tuple[str, str], list[tuple[str, TypeName]]] = field(default_factory=dict)
    domains: dict[tuple[str, str], TypeName] = field(default_factory=dict)
    function_comments: dict[tuple[str, str], str] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)

    def composite(self, schema: str, name: str) -> list[tuple[str, TypeName]] | None:
        """Return the fields of composite `schema.name` (schema may be empty), if known."""
        return _find(self.composites, schema, name)

    def domain(self, schema: str, name: str) -> tuple[tuple[str, str], TypeName] | None:
        """Return the key and base type of domain `schema.name` (schema may be empty)."""
        key = _find_key(self.domains, schema, name)
        return None if key is None else (key, self.domains[key])


def _find_key(table: dict[tuple[str, str], _T], schema: str, name: str) -> tuple[str, str] | None:
    if (schema, name) in table:
        return (schema, name)
    matches = [(s, n) for (s, n) in table if n == name and (not schema or not s)]
    return matches[0] if len(matches) == 1 else None


def _find(table: dict[tuple[str, str], _T], schema: str, name: str) -> _T | None:
    key = _find_key(table, schema, name)
    return None if key is None else table[key]


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    """Yield (kind, text) tokens; words are lower-cased, quoted identifiers unquoted."""
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the punct branch matches any character
            return
        kind, value = m.lastgroup or "punct", m.group()
        pos = m.end()
        if kind == "block":
            depth = 1
            while depth and pos < len(text):
                if text.startswith("/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif text.startswith("*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
        elif kind == "dollar":
            end = text.find(value, pos)
            pos = len(text) if end < 0 else end + len(value)
            yield "string", ""
        elif kind == "word":
            yield "word", value.lower()
        elif kind == "quoted":
            yield "word", value[1:-1].replace('""', '"')
        elif kind not in ("ws", "line"):
            yield kind, value


def _unquote(literal: str) -> str:
    """The text of a string literal token ('it''s' → it's; E'' escapes are kept as written)."""
    if literal.startswith("'"):
        return literal[1:-1].replace("''", "'")
    return literal[2:-1].replace("''", "'")


def _statements(text: str) -> Iterator[list[tuple[str, str]]]:
    statement: list[tuple[str, str]] = []
    for token in _tokens(text):
        if token == ("punct", ";"):
            if statement:
                yield statement
            statement = []
        else:
            statement.append(token)
    if statement:
        yield statement


def _qualified(tokens: list[tuple[str, str]], i: int) -> tuple[str, str, int]:
    """Read `name` or `schema.name` at tokens[i]; return schema, name, next index."""
    first = tokens[i][1]
    if i + 2 < len(tokens) and tokens[i + 1] == ("punct", ".") and tokens[i + 2][0] == "word":
        return first, tokens[i + 2][1], i + 3
    return "", first, i + 1


def type_name(tokens: list[tuple[str, str]]) -> TypeName:
    """Parse the tokens of a type (`numeric(10, 2)`, `keen.mood[]`, `int ARRAY`)."""
    words: list[str] = []
    schema, dims, depth = "", 0, 0
    for i, (kind, text) in enumerate(tokens):
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        elif depth:
            continue
        elif text == "[":
            dims += 1
        elif kind == "word" and text == "array" and words:
            dims = max(dims, 1)
        elif text == "." and words and not schema and i + 1 < len(tokens):
            schema = words.pop()
        elif kind == "word":
            words.append(text)
    return TypeName(schema, " ".join(words), dims)


def _split_fields(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    parts: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for token in tokens:
        if token[1] in ("(", "["):
            depth += 1
        elif token[1] in (")", "]"):
            depth -= 1
        if depth == 0 and token == ("punct", ","):
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def scan(text: str, found: SchemaTypes) -> None:
    """Add the composite types and domains created by the SQL `text` to `found`."""
    for st in _statements(text):
        words = [t for _, t in st[:3]]
        if words[:2] == ["create", "type"] and len(st) > 3:
            schema, name, i = _qualified(st, 2)
            if st[i : i + 2] == [("word", "as"), ("punct", "(")] and st[-1] == ("punct", ")"):
                fields = _split_fields(st[i + 2 : -1])
                found.composites[(schema, name)] = [(f[0][1], type_name(f[1:])) for f in fields]
        elif words == ["comment", "on", "function"] and st[-1][0] == "string" and len(st) > 5:
            schema, name, _ = _qualified(st, 3)
            if st[-2] == ("word", "is"):
                found.function_comments[(schema, name)] = _unquote(st[-1][1])
        elif words[:2] == ["create", "domain"] and len(st) > 3:
            schema, name, i = _qualified(st, 2)
            if st[i] == ("word", "as"):
                i += 1
            end = i
            while end < len(st) and not (st[end][0] == "word" and st[end][1] in _DOMAIN_END):
                end += 1
            found.domains[(schema, name)] = type_name(st[i:end])


def sql_files(paths: tuple[str, ...], unread: list[str], root: Path | None = None) -> list[Path]:
    """The .sql files of sqlc's `schema` or `queries` entries (files or flat directories).

    Paths are relative to `root` or the working directory (sqlc runs the plugin where it was
    started); entries not found are appended to `unread`.
    """
    base = root or Path.cwd()
    out: list[Path] = []
    for entry in paths:
        path = base / entry
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix == ".sql" and p.is_file())
        elif path.is_file():
            out.append(path)
        else:
            unread.append(entry)
    return [p for p in out if not p.name.endswith((".down.sql", ".rollback.sql"))]


def read(paths: tuple[str, ...], root: Path | None = None) -> SchemaTypes:
    """Scan the schema files and directories sqlc was given."""
    found = SchemaTypes()
    for file in sql_files(paths, found.unread, root):
        scan(file.read_text(encoding="utf-8"), found)
    return found


_NAME_LINE = re.compile(r"^\s*--\s*name:\s*(\S+)\s+:\w+")
_NARG = re.compile(
    r"\bsqlc\s*\.\s*narg\s*\(\s*(?:\"([^\"]+)\"|'([^']+)'|([A-Za-z_][A-Za-z0-9_$]*))\s*\)"
)


@dataclass(frozen=True, slots=True)
class QuerySource:
    """What a query file says about one query beyond sqlc's request.

    `lines` are the comment lines right after its `-- name:` line (purpose lines and
    `@` annotations, in order); `nargs` the names given to `sqlc.narg(…)` in its text.
    """

    lines: tuple[str, ...]
    nargs: frozenset[str]


def query_sources(
    paths: tuple[str, ...], root: Path | None = None
) -> dict[tuple[str, str], QuerySource]:
    """(file name, query name) → the query's comment lines under its name line, and its nargs.

    sqlc hands a query every comment above it, file banners included; the lines that follow
    the name line are the ones that describe the query. sqlc replaces `sqlc.narg(x)` by `$n`
    and marks it nullable, as it does a `sqlc.arg(x)` it infers nullable: the text tells them
    apart.
    """
    out: dict[tuple[str, str], QuerySource] = {}
    for file in sql_files(paths, [], root):
        lines = file.read_text(encoding="utf-8").splitlines()
        starts = [i for i, line in enumerate(lines) if _NAME_LINE.match(line)]
        for n, i in enumerate(starts):
            m = _NAME_LINE.match(lines[i])
            assert m is not None
            end = starts[n + 1] if n + 1 < len(starts) else len(lines)
            doc = []
            for following in lines[i + 1 : end]:
                stripped = following.strip()
                if not stripped.startswith("--"):
                    break
                doc.append(stripped[2:].strip())
            nargs = {
                next(g for g in found.groups() if g)
                for found in _NARG.finditer("\n".join(lines[i + 1 : end]))
            }
            out[(file.name, m.group(1))] = QuerySource(tuple(doc), frozenset(nargs))
    return out
