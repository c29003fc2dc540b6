"""Unit tests of the plugin's parts: names, type names, schema scan, options, protocol."""

from __future__ import annotations

import ast
import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from sqlc_psycopg import names, options, pgtypes, plan, protocol, render, schema_sql
from sqlc_psycopg.__main__ import generate
from sqlc_psycopg.errors import PluginError

from tests import corpus, harness
from tests.conftest import Built


@pytest.mark.parametrize(
    ("sql", "python"),
    [
        ("p_amount", "p_amount"),
        ("authorID", "authorID"),
        ("class", "class_"),
        ("match", "match_"),
        ("Mixed Case", "Mixed_Case"),
        ("_private", "private_"),
        ("1st", "v1st_"),
        ("", "column"),
    ],
)
def test_identifier_keeps_valid_names_and_repairs_the_rest(sql: str, python: str) -> None:
    assert names.identifier(sql) == python
    assert python.isidentifier() and not python.startswith("_")


def test_names_snake_camel_singular_unique() -> None:
    assert names.snake("GetAuthorByID") == "get_author_by_id"
    assert names.snake("list-users") == "list_users"
    assert names.camel("order_items") == "OrderItems"
    assert [names.singular(n) for n in ("authors", "categories", "boxes", "status", "data")] == [
        "author",
        "category",
        "box",
        "status",
        "data",
    ]
    assert names.unique(["id", "id", "id_2", "a"]) == ["id", "id_2", "id_2_2", "a"]
    assert names.enum_member("in progress") == "IN_PROGRESS"
    assert names.enum_member("2nd") == "V2ND"


@pytest.mark.parametrize(
    ("schema", "name", "expected"),
    [
        ("", "int4", ("", "int4", 0)),
        ("", "pg_catalog.int8", ("pg_catalog", "int8", 0)),
        ("pg_catalog", "int4", ("pg_catalog", "int4", 0)),
        ("", "numeric(10,2)", ("", "numeric", 0)),
        ("", "text[][]", ("", "text", 2)),
        ("", '"Weird Type"', ("", "Weird Type", 0)),
    ],
)
def test_split_name(schema: str, name: str, expected: tuple[str, str, int]) -> None:
    assert pgtypes.split_name(schema, name) == expected


def test_every_spelling_of_a_builtin_maps_to_one_python_type() -> None:
    for spelling in ("integer", "int", "int4", "serial", "INTEGER"):
        assert pgtypes.builtin("", spelling) == pgtypes.Scalar("int", ())
    for spelling in ("timestamp with time zone", "timestamptz"):
        found = pgtypes.builtin("pg_catalog", spelling)
        assert found is not None and found.annotation == "datetime.datetime"
    assert pgtypes.builtin("keen", "int4") is None
    assert pgtypes.json_kind("", "jsonb") == "Jsonb"


def test_schema_scan_finds_composites_domains_and_function_comments() -> None:
    found = schema_sql.SchemaTypes()
    schema_sql.scan(
        """
        -- CREATE TYPE commented_out AS (a int);
        /* CREATE TYPE nested /* comment */ AS (a int); */
        CREATE TYPE keen."Addr" AS (street text, nums numeric(10, 2)[], m keen.mood);
        CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ CREATE TYPE in_body AS (a int) $$;
        CREATE DOMAIN keen.email AS citext CHECK (VALUE ~ '@');
        CREATE DOMAIN positive int NOT NULL;
        COMMENT ON FUNCTION keen.f() IS 'It''s f.';
        """,
        found,
    )
    assert list(found.composites) == [("keen", "Addr")]
    fields = found.composite("keen", "Addr")
    assert fields == [
        ("street", schema_sql.TypeName("", "text", 0)),
        ("nums", schema_sql.TypeName("", "numeric", 1)),
        ("m", schema_sql.TypeName("keen", "mood", 0)),
    ]
    assert found.domain("", "email") == (("keen", "email"), schema_sql.TypeName("", "citext", 0))
    assert found.domain("public", "positive") == (
        ("", "positive"),
        schema_sql.TypeName("", "int", 0),
    )
    assert found.function_comments == {("keen", "f"): "It's f."}


def test_query_sources_give_the_lines_under_the_name_line_and_the_nargs(tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text(
        "-- File banner, not a docstring.\n\n"
        "-- name: A :one\n-- First line.\n-- @lookup\n"
        "SELECT sqlc.narg(x)::int, sqlc.arg(y)::int, sqlc.narg('limit')::int;\n\n"
        "-- name: B :exec\nSELECT 2;\n"
    )
    assert schema_sql.query_sources(("q.sql",), tmp_path) == {
        ("q.sql", "A"): schema_sql.QuerySource(
            ("First line.", "@lookup"), frozenset({"x", "limit"})
        ),
        ("q.sql", "B"): schema_sql.QuerySource((), frozenset()),
    }


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["@lookop"], "unknown annotation '@lookop'"),
        (["@lookup: a"], "@lookup takes no arguments"),
        (["@not-null"], "@not-null needs column names"),
        (["@not-null: a", "@nullable: a"], "both @not-null and @nullable"),
        (["@nullable: *"], "both @not-null and @nullable"),
    ],
)
def test_bad_annotations_are_rejected(lines: list[str], message: str) -> None:
    with pytest.raises(PluginError, match=re.escape(message)):
        plan.parse_annotations(lines, "q.sql: query Q")


def test_annotations_leave_the_docstring_and_skip_sqlc_flags() -> None:
    doc, notes = plan.parse_annotations(
        ["Purpose.", "@sqlc-vet-disable", "@lookup", "@not-null: *", "@nullable: a, b"], "q"
    )
    assert doc == "Purpose."
    assert notes == plan.Annotations(True, frozenset({"*"}), frozenset({"a", "b"}))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"emit_sinc": true}', "unknown plugin option(s) emit_sinc"),
        ('{"emit_sync": "yes"}', "must be true or false"),
        ('{"emit_sync": false, "emit_async": false}', "cannot both be false"),
        ('{"rows": "dataclass"}', "'rows' must be one of tuple, named"),
        ('{"rows": true}', "'rows' must be one of tuple, named"),
        ("[1]", "must be a mapping"),
        ("{", "not valid JSON"),
        ('{"overrides": [{"db_type": "int4"}]}', "set 'py_type', 'nullable' or both"),
        ('{"overrides": [{"db_type": "int4[]", "py_type": "int"}]}', "without []"),
        ('{"overrides": [{"column": "a", "py_type": "int"}]}', "'table.column'"),
        ('{"overrides": [{"query": "Q", "py_type": "int"}]}', "exactly one of"),
        ('{"overrides": [{"db_type": "x", "py_type": "int", "colour": 1}]}', "unknown key(s)"),
        ('{"overrides": [{"db_type": "x", "py_type": "foo("}]}', "is not a Python type"),
        ('{"overrides": [{"db_type": "x", "py_type": "f()"}]}', "not a plain type expression"),
    ],
)
def test_bad_options_are_rejected_with_a_message(raw: str, message: str) -> None:
    with pytest.raises(PluginError) as info:
        options.parse(raw.encode())
    assert message in str(info.value)


def test_the_harness_holds_tuple_rows_to_their_alias() -> None:
    """The corpus check of `rows: tuple` fails on a wrong type, length or row class."""
    alias = tuple[int, str | None]
    harness.check_result([(1, None), (2, "b")], "many", alias)
    harness.check_result(None, "one", alias)

    class Named(NamedTuple):
        a: int
        b: str | None

    bad: list[tuple[object, str]] = [
        ([(1, 2)], "matches none of"),  # an int where str | None is promised
        ([(1,)], "1 values for 2 types"),
        ([Named(1, "x")], "is a Named, not tuple"),  # a row object, not psycopg's tuple
    ]
    for rows, message in bad:
        with pytest.raises(AssertionError, match=message):
            harness.check_result(rows, "many", alias)
    with pytest.raises(AssertionError, match="pass its type as row="):
        harness.check_result([(1, "x")], "many")


def test_py_type_collects_the_modules_to_import() -> None:
    parsed = options.PyType.parse("dict[str, typing.Any] | a.b.C | None", "x")
    assert parsed.imports == ("a.b", "typing")


@pytest.mark.parametrize("text", ["a", 'say "hi"', "x\\y", 'multi\nline """ q "', "é\n\t"])
def test_string_literals_round_trip(text: str) -> None:
    assert ast.literal_eval(render.string_literal(text)) == text


def _request(tmp_path: Path, plugin_options: dict[str, object]) -> protocol.Request:
    """A minimal request: one table, one query."""
    column = {"name": "id", "not_null": True, "type": {"name": "int4"}, "table": {"name": "t"}}
    name = {"name": "name", "not_null": True, "type": {"name": "text"}, "table": {"name": "t"}}
    data = {
        "sqlc_version": "v1.31.1",
        "plugin_options": base64.b64encode(json.dumps(plugin_options).encode()).decode(),
        "settings": {"schema": [str(tmp_path / "none.sql")], "queries": []},
        "catalog": {
            "default_schema": "public",
            "schemas": [
                {"name": "public", "tables": [{"rel": {"name": "t"}, "columns": [column, name]}]}
            ],
        },
        "queries": [
            {
                "name": "GetT",
                "cmd": ":one",
                "text": "SELECT id, name FROM t WHERE id = $1",
                "filename": "q.sql",
                "columns": [column, name],
                "params": [{"number": 1, "column": column}],
            }
        ],
    }
    return protocol.Request.parse(data)


def test_generation_is_deterministic_and_compiles(tmp_path: Path) -> None:
    first = generate(_request(tmp_path, {}))
    second = generate(_request(tmp_path, {}))
    assert first == second
    assert sorted(first) == ["__init__.py", "bound.py", "models.py", "py.typed", "q.py"]
    assert first["q.py"].startswith("# Code generated by sqlc. DO NOT EDIT.\n")
    # The default row form is psycopg's own tuple, typed by an alias; psycopg builds no object.
    assert "def get_t(conn: psycopg.Connection[Any], *, id: int) -> GetTRow:" in first["q.py"]
    assert "GetTRow: TypeAlias = tuple[\n    int,  # id\n    str,  # name\n]\n" in first["q.py"]
    assert 'GET_T_ROWS = cast("models.RowFactory[GetTRow]", tuple_row)' in first["q.py"]
    assert "async def get_t_async(" in first["q.py"]
    named = generate(_request(tmp_path, {"rows": "named"}))["q.py"]
    assert "def get_t(conn: psycopg.Connection[Any], *, id: int) -> models.T:" in named
    assert "GET_T_ROWS = models.row_factory(models.T)" in named
    only_sync = generate(_request(tmp_path, {"emit_async": False}))
    assert "_async" not in only_sync["q.py"]


def test_the_command_exits_1_with_the_message_on_stderr() -> None:
    data = {"plugin_options": base64.b64encode(b'{"nope": 1}').decode()}
    result = subprocess.run(
        [sys.executable, "-m", "sqlc_psycopg"],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        check=False,
        cwd=corpus.ROOT,
    )
    assert result.returncode == 1
    assert "sqlc-gen-psycopg: unknown plugin option(s) nope" in result.stderr
    assert result.stdout == ""


def test_the_command_answers_json_files() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sqlc_psycopg"],
        input=json.dumps({"sqlc_version": "v1"}),
        capture_output=True,
        text=True,
        check=True,
        cwd=corpus.ROOT,
    )
    files = {
        f["name"]: base64.b64decode(f["contents"]).decode()
        for f in json.loads(result.stdout)["files"]
    }
    assert set(files) == {"__init__.py", "py.typed", "models.py", "bound.py"}
    assert "def register_types(conn: psycopg.Connection[Any]) -> None:" in files["models.py"]


def test_sqlc_runs_give_identical_bytes(built: Built, tmp_path: Path, admin_url: str) -> None:
    """A second sqlc run (another plugin process, another hash seed) writes the same bytes."""
    cases = [c for c in corpus.load(corpus.CASES) if c.name in ("embed", "enums")]
    result = corpus.run_sqlc(cases, tmp_path, admin_url)
    assert result.returncode == 0, result.stderr
    for case in cases:
        again, first = tmp_path / "gen" / case.package, built.gen / case.package
        files = sorted(p.name for p in first.iterdir() if p.is_file())
        assert files == sorted(p.name for p in again.iterdir())
        for name in files:
            assert (again / name).read_bytes() == (first / name).read_bytes(), name
