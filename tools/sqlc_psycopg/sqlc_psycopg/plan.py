"""From sqlc's request to a plan of the Python to write: classes, functions, their types.

Nothing here writes code (see `render`); everything here decides names and types, and
collects every error of the input so that one run reports them all.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from sqlc_psycopg import names, pgtypes, schema_sql
from sqlc_psycopg.errors import PluginError
from sqlc_psycopg.options import Options, Override
from sqlc_psycopg.protocol import Column, Identifier, Query, Request

# Placeholder for the models module in annotations: "" inside models.py, "models." elsewhere.
M = "{m}"
COMMANDS = {
    ":one",
    ":many",
    ":exec",
    ":execrows",
    ":execresult",
    ":copyfrom",
    ":batchexec",
    ":batchmany",
    ":batchone",
}
ROW_COMMANDS = {":one", ":many", ":batchmany", ":batchone"}
PARAMS_CLASS_COMMANDS = {":copyfrom", ":batchexec", ":batchmany", ":batchone"}
SYSTEM_SCHEMAS = {"pg_catalog", "information_schema", "pg_temp", "pg_toast"}
# Names the generated modules define or import themselves; user names that clash get a `_`.
RESERVED = {
    "annotations",
    "conn",
    "rows",
    "psycopg",
    "models",
    "datetime",
    "decimal",
    "uuid",
    "ipaddress",
    "typing",
    "enum",
    "partial",
    "Any",
    "LiteralString",
    "NamedTuple",
    "Iterable",
    "Iterator",
    "AsyncIterator",
    "Sequence",
    "Callable",
    "Generic",
    "TypeAlias",
    "TypeVar",
    "Mapping",
    "EnumInfo",
    "CompositeInfo",
    "register_enum",
    "register_composite",
    "RowFactory",
    "row_factory",
    "TupleRow",
    "tuple_row",
    "cast",
    "register_types",
    "register_types_async",
    "JsonValue",
    "JsonParam",
    "NoRowError",
    "ErrorHook",
    "raise_mapped",
    "self",
    "on_error",
    "itemgetter",
    "bound",
}
MODELS_RESERVED = RESERVED - {"models"}
# Builtins: a generated function or field of that name would shadow it (`def list` breaks every
# later `list[…]` annotation of the module); they get a trailing `_` (`list_`).
BUILTINS = {n for n in dir(builtins) if not n.startswith("_")}
# Names the annotations of a class body use: a field of that name would hide them.
ANNOTATION_NAMES = {
    *("list", "dict", "tuple", "int", "float", "str", "bytes", "bool", "object"),
    *("decimal", "uuid", "datetime", "ipaddress", "typing", "psycopg", "models", "enum"),
    *("Any", "JsonValue", "JsonParam"),
}
# Module names the generated package keeps for itself: a query file may not be named so.
PACKAGE_MODULES = {"models", "bound"}
# What a column or parameter sqlc could not type, or of a type the plugin does not know, is
# annotated (results: anything psycopg returns; parameters: anything psycopg can adapt).
FALLBACK_RESULT = "typing.Any"
FALLBACK_PARAM = "object"
ANNOTATIONS = {"lookup", "not-null", "nullable"}


@dataclass(frozen=True, slots=True)
class Resolved:
    """The Python side of one SQL type: element annotations, imports, JSON wrapper."""

    result: str
    param: str
    imports: frozenset[str]
    json: str | None = None
    fallback: str = ""  # the SQL type when it has no Python type: annotated Any / object


@dataclass(frozen=True, slots=True)
class Typed:
    """A column or parameter typed: full annotation, element, nullability, array depth."""

    annotation: str
    resolved: Resolved
    nullable: bool
    dims: int

    @property
    def note(self) -> str:
        """A comment naming the SQL type of a fallback annotation; "" otherwise."""
        return _fallback_note(self.resolved.fallback)


def _fallback_note(sql_type: str) -> str:
    if not sql_type:
        return ""
    if sql_type.lower() in pgtypes.POLYMORPHIC:
        return f"sqlc could not type it ({sql_type or 'no type'}): add a cast"
    return f"SQL type {sql_type}: no Python type known (add an override)"


@dataclass(slots=True)
class Field:
    """A field of a generated NamedTuple."""

    name: str
    annotation: str
    comment: str = ""
    embed_width: int = 0  # > 0: an sqlc.embed, built from that many result values
    imports: frozenset[str] = frozenset()
    note: str = ""  # a fallback annotation's comment (the SQL type)


@dataclass(slots=True)
class ModelClass:
    """A generated NamedTuple class (table model, composite, query row or params)."""

    name: str
    doc: str
    fields: list[Field]
    pg_name: str = ""  # for composites: the type name psycopg registers
    sql_name: str = ""  # the table or type it models, for docstrings
    plain: bool = False  # a query row in the `rows: tuple` form: a tuple type alias


@dataclass(slots=True)
class EnumClass:
    """A generated `enum.StrEnum` for a PostgreSQL enum."""

    name: str
    doc: str
    members: list[tuple[str, str]]
    pg_name: str


@dataclass(slots=True)
class Param:
    """A parameter of a generated function (or a field of its params class)."""

    name: str
    annotation: str
    json: str | None
    dims: int
    nullable: bool
    optional: bool = False  # sqlc.narg: a keyword argument defaulting to None
    note: str = ""  # a fallback annotation's comment (the SQL type)


@dataclass(slots=True)
class QueryPlan:
    """Everything needed to write one query."""

    query: Query
    func: str
    const: str
    doc: str
    params: list[Param]
    row_ref: str = ""  # annotation of a result row ({m}Model or a class of the module)
    row_class: ModelClass | None = None
    params_class: ModelClass | None = None
    sql: str = ""  # the statement psycopg runs (COPY … FROM STDIN for :copyfrom)
    lookup: bool = False  # `-- @lookup`: :one / :batchone give None for no row
    scalar: Field | None = None  # a single-column result: its value, not a row
    names: dict[str, str] = field(default_factory=dict)  # variant → function name


@dataclass(slots=True)
class ModulePlan:
    """One query file → one module."""

    name: str
    source: str
    queries: list[QueryPlan] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)
    bound: str = ""  # the class binding the module's queries to a connection
    bound_async: str = ""  # its async twin
    attribute: str = ""  # its attribute on bound.Queries


@dataclass(slots=True)
class Plan:
    """The whole package."""

    sqlc_version: str
    options: Options
    enums: list[EnumClass]
    composites: list[ModelClass]
    tables: list[ModelClass]
    modules: list[ModulePlan]
    model_imports: set[str]
    domains: list[str] = field(default_factory=list)


def quote_ident(name: str) -> str:
    """Quote an SQL identifier unless it is a plain lower-case one."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'


def _qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}" if schema else quote_ident(name)


def _doc_lines(lines: Iterable[str]) -> str:
    out = [line[1:] if line.startswith(" ") else line for line in lines]
    return "\n".join(out).strip()


class Planner:
    """Resolves names and types against the catalog, the schema files and the overrides."""

    def __init__(self, request: Request, options: Options, found: schema_sql.SchemaTypes) -> None:
        self.request = request
        self.options = options
        self.found = found
        self.errors: list[str] = []
        self.default = request.default_schema
        user = [s for s in request.schemas if s.name not in SYSTEM_SCHEMAS]
        self.tables = {(s.name, t.rel.name): t for s in user for t in s.tables}
        self.enum_defs = {(s.name, e.name): e for s in user for e in s.enums}
        self.composite_defs = {(s.name, c.name): c for s in user for c in s.composite_types}
        self.class_names = self._class_names()
        self.used_table_types: set[tuple[str, str]] = set()
        self.used_overrides: set[int] = set()
        self.composites: dict[tuple[str, str], ModelClass] = {}
        self.composite_deps: dict[tuple[str, str], set[tuple[str, str]]] = {}
        # Domains in use: psycopg knows no loader for arrays of a domain (their own type).
        self.domains: set[str] = set()

    # -- names ------------------------------------------------------------------------------

    def _class_names(self) -> dict[tuple[str, str, str], str]:
        """Class name of every enum, composite and table: CamelCase, schema-prefixed on clash."""
        keys = (
            [("enum", *k) for k in self.enum_defs]
            + [("composite", *k) for k in self.composite_defs]
            + [("table", *k) for k in self.tables]
        )

        def base(key: tuple[str, str, str]) -> str:
            kind, _, name = key
            return names.camel(names.singular(name) if kind == "table" else name)

        counts: dict[str, int] = {}
        for key in keys:
            counts[base(key)] = counts.get(base(key), 0) + 1
        wanted = [
            names.camel(key[1]) + base(key)
            if counts[base(key)] > 1 and key[1] != self.default
            else base(key)
            for key in keys
        ]
        return dict(zip(keys, names.unique(wanted, MODELS_RESERVED), strict=True))

    # -- types ------------------------------------------------------------------------------

    def user_key(
        self, table: Mapping[tuple[str, str], object], schema: str, name: str
    ) -> tuple[str, str] | None:
        if schema:
            return (schema, name) if (schema, name) in table else None
        if (self.default, name) in table:
            return (self.default, name)
        matches = [k for k in table if k[1] == name]
        return matches[0] if len(matches) == 1 else None

    def _type_override(self, schema: str, name: str) -> Override | None:
        for o in self.options.overrides:
            if o.db_type is None:
                continue
            o_schema, o_name = o.db_type
            same_name = pgtypes.canonical(o_name) == pgtypes.canonical(name)
            schemas = {o_schema, schema} - {"", "pg_catalog"}
            same_schema = not o_schema or o_schema == schema or not schemas
            if same_name and same_schema:
                self.used_overrides.add(o.index)
                return o
        return None

    def resolve(self, schema: str, name: str, where: str, depth: int = 0) -> tuple[Resolved, int]:
        """Return the Python types of SQL type `schema.name` and its extra array depth."""
        schema, name, dims = pgtypes.split_name(schema, name)
        override = self._type_override(schema, name)
        if override is not None and override.py_type is not None:
            t = override.py_type
            kind = pgtypes.json_kind(schema, name)
            return Resolved(t.annotation, t.annotation, frozenset(t.imports), kind), dims
        kind = pgtypes.json_kind(schema, name)
        if kind:
            return Resolved(f"{M}JsonValue", f"{M}JsonParam", frozenset(), kind), dims
        scalar = pgtypes.builtin(schema, name)
        if scalar is not None:
            ann = scalar.annotation
            return Resolved(ann, ann, frozenset(scalar.imports)), dims
        if schema == "pg_catalog":
            schema = ""
        key = self.user_key(self.enum_defs, schema, name)
        if key is not None:
            cls = M + self.class_names[("enum", *key)]
            return Resolved(cls, cls, frozenset()), dims
        key = self.user_key(self.composite_defs, schema, name)
        if key is not None:
            self.composite(key, where)
            cls = M + self.class_names[("composite", *key)]
            return Resolved(cls, cls, frozenset()), dims
        key = self.user_key(self.tables, schema, name)
        if key is not None:
            self.used_table_types.add(key)
            cls = M + self.class_names[("table", *key)]
            return Resolved(cls, cls, frozenset()), dims
        domain = self.found.domain(schema, name)
        if domain is not None and depth < 20:
            key, base = domain
            self.domains.add(_qualified(*key))
            resolved, more = self.resolve(base.schema, base.name, where, depth + 1)
            return resolved, dims + more + base.dims
        # sqlc-gen-go types these `interface{}`: the value still arrives, as psycopg loads it
        # (the text of a type it has no loader for). Annotated Any / object, with a comment.
        shown = f"{schema}.{name}" if schema else name
        return Resolved(
            FALLBACK_RESULT, FALLBACK_PARAM, frozenset({"typing"}), fallback=shown or "unknown"
        ), 0

    def composite(self, key: tuple[str, str], where: str) -> ModelClass:
        """Return (planning it on first use) the class of composite type `key`."""
        if key in self.composites:
            return self.composites[key]
        cls = ModelClass(
            name=self.class_names[("composite", *key)],
            doc=self.composite_defs[key].comment,
            fields=[],
            pg_name=_qualified(*key),
        )
        self.composites[key] = cls
        self.composite_deps[key] = set()
        fields = self.found.composite(key[0], key[1])
        if fields is None:
            fields = self.found.composite("", key[1]) if key[0] == self.default else None
        if fields is None:
            unread = f" ({', '.join(self.found.unread)} not found)" if self.found.unread else ""
            raise PluginError(
                f"{where}: composite type {_qualified(*key)}: sqlc does not pass its fields and "
                f"no CREATE TYPE … AS (…) for it was found in the schema files{unread}"
            )
        field_names = names.unique(field_name(n) for n, _ in fields)
        for py_name, (_, t) in zip(field_names, fields, strict=True):
            resolved, dims = self.resolve(t.schema, t.name, f"{where}: composite {cls.name}")
            dep = self.user_key(self.composite_defs, t.schema, t.name)
            if dep is not None:
                self.composite_deps[key].add(dep)
            ann = _wrap(resolved.result, dims + t.dims, nullable=True)
            cls.fields.append(
                Field(
                    py_name, ann, imports=resolved.imports, note=_fallback_note(resolved.fallback)
                )
            )
        return cls

    # -- columns and parameters -------------------------------------------------------------

    def _column_override(self, column: Column) -> Override | None:
        if column.table is None:
            return None
        col_name = column.original_name or column.name
        t_schema, t_name, _ = pgtypes.split_name(column.table.schema, column.table.name)
        for o in self.options.overrides:
            if o.column is None:
                continue
            o_schema, o_table, o_col = o.column
            if (o_table, o_col) == (t_name, col_name) and o_schema in (
                "",
                t_schema or self.default,
            ):
                self.used_overrides.add(o.index)
                return o
        return None

    def column_type(
        self, column: Column, where: str, *, param: bool = False, extra: Override | None = None
    ) -> Typed:
        """Return the Python types of a column or parameter."""
        override = extra or self._column_override(column)
        resolved, more = self.resolve(column.type.schema, column.type.name, where)
        dims = column.dims + more
        nullable = not column.not_null
        if override is not None:
            if override.py_type is not None:
                ann = override.py_type.annotation
                resolved = Resolved(ann, ann, frozenset(override.py_type.imports), resolved.json)
            if override.nullable is not None:
                nullable = override.nullable
        element = resolved.param if param else resolved.result
        if resolved.fallback and (override is None or override.py_type is None):
            return Typed(element, resolved, nullable, 0)
        return Typed(_wrap(element, dims, nullable), resolved, nullable, dims)

    # -- models -----------------------------------------------------------------------------

    def table_model(self, key: tuple[str, str]) -> ModelClass:
        """Plan the NamedTuple of a table (or view)."""
        table = self.tables[key]
        name = self.class_names[("table", *key)]
        fields = []
        py_names = names.unique(field_name(c.name) for c in table.columns)
        for py_name, column in zip(py_names, table.columns, strict=True):
            where = f"table {_qualified(*key)} column {column.name}"
            column = _with_table(column, key)
            typed = self.column_type(column, where)
            fields.append(
                Field(
                    py_name,
                    typed.annotation,
                    column.comment,
                    0,
                    typed.resolved.imports,
                    typed.note,
                )
            )
        return ModelClass(name, table.comment, fields, sql_name=_qualified(*key))

    def table_for(self, ident: Identifier) -> tuple[str, str] | None:
        """Return the catalog key of a table reference."""
        schema, name, _ = pgtypes.split_name(ident.schema, ident.name)
        return self.user_key(self.tables, schema, name)


def function_name(query_name: str) -> str:
    """The function of a query: snake_case, never a builtin or a name the module uses."""
    func = names.snake(query_name)
    return func + "_" if func in RESERVED or func in BUILTINS else func


def field_name(column_name: str) -> str:
    """A NamedTuple field: a class body's annotations would see a field named `list`,
    `uuid` or `decimal` instead of the builtin or module, so those get a trailing `_`."""
    name = names.identifier(column_name)
    return name + "_" if name in ANNOTATION_NAMES else name


def _annotated(
    override: Override | None, column: str, notes: Annotations, query: str
) -> Override | None:
    """A column's override with the query's @not-null / @nullable applied (an option's
    `nullable` wins: it is the more specific)."""
    if column in notes.nullable:
        nullable = True
    elif column in notes.not_null or "*" in notes.not_null:
        nullable = False
    else:
        return override
    if override is not None and override.nullable is not None:
        return override
    return Override(
        index=-1 if override is None else override.index,
        db_type=None,
        column=None,
        query=query,
        name=column,
        is_param=False,
        py_type=None if override is None else override.py_type,
        nullable=nullable,
    )


def _is_record(column: Column) -> bool:
    schema, name, _ = pgtypes.split_name(column.type.schema, column.type.name)
    return schema in ("", "pg_catalog") and name.lower() == "record"


def _with_table(column: Column, key: tuple[str, str]) -> Column:
    if column.table is not None and column.table.name:
        return column
    from dataclasses import replace

    return replace(column, table=Identifier(key[0], key[1]))


def _wrap(element: str, dims: int, nullable: bool) -> str:
    out = element
    for _ in range(dims):
        out = f"list[{out}]"
    if nullable and out != "None":
        out = f"{out} | None"
    return out


def module_name(filename: str) -> str:
    """Return the module of a query file (`queries/credits.sql` → `credits`)."""
    stem = PurePosixPath(filename.replace("\\", "/")).name
    stem = stem[: -len(".sql")] if stem.endswith(".sql") else stem
    return names.identifier(stem.replace("-", "_").replace(".", "_"))


@dataclass(frozen=True, slots=True)
class Annotations:
    """The `-- @…` lines under a query's name line (docs/sqlc_plugin.md, Annotations)."""

    lookup: bool = False
    not_null: frozenset[str] = frozenset()  # "*": every result column
    nullable: frozenset[str] = frozenset()


def parse_annotations(lines: Iterable[str], where: str) -> tuple[str, Annotations]:
    """Split comment lines into the docstring and the `@` annotations."""
    doc: list[str] = []
    lookup = False
    lists: dict[str, set[str]] = {"not-null": set(), "nullable": set()}
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith("@"):
            doc.append(line)
            continue
        m = re.fullmatch(r"@([A-Za-z_-]+)\s*:?\s*(.*)", stripped)
        word = m.group(1).lower() if m else stripped
        if word.startswith("sqlc-"):  # sqlc's own flags (`@sqlc-vet-disable`)
            continue
        if m is None or word not in ANNOTATIONS:
            raise PluginError(
                f"{where}: unknown annotation {stripped!r} (known: "
                + ", ".join("@" + a for a in sorted(ANNOTATIONS))
                + ")"
            )
        items = {i.strip() for i in m.group(2).split(",") if i.strip()}
        if word == "lookup":
            if items:
                raise PluginError(f"{where}: @lookup takes no arguments")
            lookup = True
        elif not items:
            raise PluginError(f"{where}: @{word} needs column names (or *)")
        else:
            lists[word] |= items
    both = lists["not-null"] & lists["nullable"]
    if both or "*" in lists["nullable"]:
        raise PluginError(f"{where}: columns both @not-null and @nullable: {sorted(both) or '*'}")
    notes = Annotations(lookup, frozenset(lists["not-null"]), frozenset(lists["nullable"]))
    return _doc_lines(doc), notes


class QueryPlanner:
    """Plans the queries of the request on top of a `Planner`."""

    def __init__(
        self, planner: Planner, sources: Mapping[tuple[str, str], schema_sql.QuerySource]
    ) -> None:
        self.p = planner
        self.sources = sources
        self.table_models: dict[tuple[str, str], ModelClass] = {}

    def source(self, query: Query) -> schema_sql.QuerySource | None:
        """What the query file says about `query` (None when it could not be read)."""
        return self.sources.get((PurePosixPath(query.filename).name, query.name))

    def doc(self, query: Query, purpose: str) -> str:
        """The query's purpose lines, then the COMMENT ON of every function it calls."""
        parts = [purpose]
        for schema, name in _CALL.findall(query.text):
            comment = _find_comment(self.p.found.function_comments, schema, name)
            if comment and comment not in parts:
                parts.append(comment)
        return "\n\n".join(p for p in parts if p)

    def table_model(self, key: tuple[str, str]) -> ModelClass:
        """The (cached) model of a table."""
        if key not in self.table_models:
            self.table_models[key] = self.p.table_model(key)
        return self.table_models[key]

    def _query_overrides(self, query: Query) -> tuple[dict[str, Override], dict[str, Override]]:
        columns: dict[str, Override] = {}
        params: dict[str, Override] = {}
        for o in self.p.options.overrides:
            if o.query == query.name:
                (params if o.is_param else columns)[o.name] = o
                self.p.used_overrides.add(o.index)
        return columns, params

    def plan(self, query: Query, module: ModulePlan, taken: set[str], bases: set[str]) -> QueryPlan:
        """Plan one query; `taken` holds the module-level names already used, `bases` the
        function names of all the module's queries (derived names make way for them)."""
        where = f"{query.filename}: query {query.name}"
        if query.cmd not in COMMANDS:
            raise PluginError(f"{where}: command {query.cmd} is not supported on PostgreSQL")
        func = function_name(query.name)
        const = names.constant(query.name)
        clash = [n for n in (const, func) if n in taken]
        if clash:
            raise PluginError(
                f"{where}: duplicate query name: {', '.join(clash)} already defined in "
                f"module {module.name}"
            )
        taken.update((const, func))
        source = self.source(query)
        lines = source.lines if source is not None else tuple(query.comments)
        purpose, notes = parse_annotations(lines, where)
        if notes.lookup and query.cmd not in (":one", ":batchone"):
            raise PluginError(f"{where}: @lookup is for :one and :batchone queries")
        variants = {"": func}
        wanted = []
        if self.p.options.emit_async:
            wanted.append("_async")
        if query.cmd == ":many":
            wanted += ["_iter"] + (["_iter_async"] if self.p.options.emit_async else [])
        if query.params and query.cmd not in PARAMS_CLASS_COMMANDS:
            wanted.append("_params")
        for suffix in wanted:
            variants[suffix] = names.unique([func.rstrip("_") + suffix], taken | bases)[0]
            taken.add(variants[suffix])
        if query.cmd in ROW_COMMANDS:
            variants["ROWS"] = names.unique([const + "_ROWS"], taken | bases)[0]
            taken.add(variants["ROWS"])
        col_over, par_over = self._query_overrides(query)
        plan = QueryPlan(
            query=query,
            func=func,
            const=const,
            doc=self.doc(query, purpose),
            params=self._params(query, where, par_over, module, source),
            sql=query.text,
            lookup=notes.lookup,
            names=variants,
        )
        if query.cmd in ROW_COMMANDS:
            self._row(plan, where, col_over, module, taken, notes)
        elif query.columns and query.cmd == ":copyfrom":
            raise PluginError(f"{where}: :copyfrom cannot return columns")
        if query.cmd in PARAMS_CLASS_COMMANDS:
            cls_name = names.unique([names.camel(query.name) + "Params"], taken)[0]
            taken.add(cls_name)
            plan.params_class = ModelClass(
                cls_name,
                f"Parameters of one {query.name} row.",
                [Field(p.name, p.annotation, note=p.note) for p in plan.params],
            )
            if not plan.params:
                raise PluginError(f"{where}: {query.cmd} needs at least one parameter")
        if query.cmd == ":copyfrom":
            plan.sql = self._copy_sql(query, where)
        unknown = [n for n in col_over if n not in {c.name for c in query.columns}]
        unknown += [n for n in par_over if n not in {p.column.name for p in query.params}]
        if unknown:
            raise PluginError(f"{where}: overrides name no such column or parameter: {unknown}")
        columns = {c.name for c in query.columns}
        unknown = sorted((notes.not_null | notes.nullable) - columns - {"*"})
        if unknown:
            raise PluginError(f"{where}: @not-null / @nullable name no such column: {unknown}")
        return plan

    def _params(
        self,
        query: Query,
        where: str,
        overrides: dict[str, Override],
        module: ModulePlan,
        source: schema_sql.QuerySource | None,
    ) -> list[Param]:
        params = sorted(query.params, key=lambda p: p.number)
        if [p.number for p in params] != list(range(1, len(params) + 1)):
            raise PluginError(f"{where}: parameters are not numbered $1…${len(params)}")
        for p in params:
            if p.column.is_sqlc_slice:
                raise PluginError(
                    f"{where}: sqlc.slice({p.column.name}) is not supported on PostgreSQL "
                    f"(sqlc leaves IN ($n)); bind a list with "
                    f"= ANY(sqlc.arg({p.column.name or 'ids'})::T[]) instead"
                )
        wanted = [
            names.identifier(p.column.name) if p.column.name else f"p{p.number}" for p in params
        ]
        py_names = names.unique([n + "_" if n in RESERVED else n for n in wanted], taken=())
        nargs = source.nargs if source is not None else frozenset()
        out = []
        for py_name, p in zip(py_names, params, strict=True):
            pw = f"{where} parameter ${p.number} ({p.column.name or 'unnamed'})"
            t = self.p.column_type(p.column, pw, param=True, extra=overrides.get(p.column.name))
            module.imports |= t.resolved.imports
            optional = (
                t.nullable and p.column.name in nargs and query.cmd not in PARAMS_CLASS_COMMANDS
            )
            out.append(
                Param(py_name, t.annotation, t.resolved.json, t.dims, t.nullable, optional, t.note)
            )
        return out

    def _row(
        self,
        plan: QueryPlan,
        where: str,
        overrides: dict[str, Override],
        module: ModulePlan,
        taken: set[str],
        notes: Annotations,
    ) -> None:
        query = plan.query
        if not query.columns:
            raise PluginError(f"{where}: {query.cmd} needs a result (add RETURNING, or use :exec)")
        wanted = []
        for i, c in enumerate(query.columns, start=1):
            if c.embed_table is not None:
                key = self.p.table_for(c.embed_table)
                embed_name = self.p.class_names[("table", *key)] if key else c.name
                wanted.append(names.snake(embed_name))
            else:
                wanted.append(field_name(c.name) if c.name else f"column_{i}")
        py_names = names.unique(wanted)
        fields = []
        for py_name, c in zip(py_names, query.columns, strict=True):
            cw = f"{where} column {c.name or py_name}"
            if c.embed_table is not None:
                key = self.p.table_for(c.embed_table)
                if key is None:
                    raise PluginError(f"{cw}: sqlc.embed of unknown table {c.embed_table.name}")
                model = self.table_model(key)
                fields.append(Field(py_name, M + model.name, embed_width=len(model.fields)))
                continue
            override = _annotated(overrides.get(c.name), c.name, notes, query.name)
            if (override is None or override.py_type is None) and _is_record(c):
                raise PluginError(
                    f"{cw}: is an anonymous record; sqlc rewrites SELECT * FROM f(…) of a "
                    "function RETURNS TABLE (…) or SETOF record to one record column, while "
                    "the server returns the function's columns. Name the columns "
                    "(SELECT a, b FROM f(…)) or expand the call (SELECT (f(…)).*)"
                )
            t = self.p.column_type(c, cw, extra=override)
            module.imports |= t.resolved.imports
            fields.append(Field(py_name, t.annotation, c.comment, note=t.note))
        if len(fields) == 1 and not fields[0].embed_width:
            # One column: the value itself, as sqlc's own generators return it.
            plan.scalar = fields[0]
            plan.row_ref = f"tuple[{fields[0].annotation}]"
            return
        plain = self.p.options.rows == "tuple"
        same = None if plain else self._same_table(query.columns, fields)
        if same is not None:
            plan.row_ref = M + same
            return
        cls_name = names.unique([names.camel(query.name) + "Row"], taken)[0]
        taken.add(cls_name)
        plan.row_class = ModelClass(cls_name, f"A row of {query.name}.", fields, plain=plain)
        plan.row_ref = cls_name

    def _same_table(self, columns: tuple[Column, ...], fields: list[Field]) -> str | None:
        """Return the table model name when the row is exactly a table's row."""
        first = columns[0].table
        if first is None or not first.name or any(f.embed_width for f in fields):
            return None
        key = self.p.table_for(first)
        if key is None:
            return None
        model = self.table_model(key)
        if len(model.fields) != len(fields):
            return None
        for c, f, m in zip(columns, fields, model.fields, strict=True):
            if c.table is None or self.p.table_for(c.table) != key:
                return None
            if (f.name, f.annotation) != (m.name, m.annotation):
                return None
        return model.name

    def _copy_sql(self, query: Query, where: str) -> str:
        target = query.insert_into_table
        if target is None or not target.name:
            raise PluginError(f"{where}: :copyfrom needs an INSERT INTO table (…) VALUES ($1, …)")
        cols = [p.column.original_name or p.column.name for p in query.params]
        if not all(cols):
            raise PluginError(f"{where}: :copyfrom needs every VALUES item to be a parameter")
        schema, name, _ = pgtypes.split_name(target.schema, target.name)
        return (
            f"COPY {_qualified(schema, name)} ({', '.join(quote_ident(c) for c in cols)})"
            " FROM STDIN"
        )


def _composite_order(planner: Planner) -> list[ModelClass]:
    """Composites, each after the composites its fields use (psycopg needs them registered)."""
    done: list[tuple[str, str]] = []

    def visit(key: tuple[str, str], stack: tuple[tuple[str, str], ...]) -> None:
        if key in done or key in stack:
            return
        for dep in sorted(planner.composite_deps.get(key, ())):
            visit(dep, (*stack, key))
        done.append(key)

    for key in sorted(planner.composites):
        visit(key, ())
    return [planner.composites[k] for k in done]


def build(
    request: Request,
    options: Options,
    found: schema_sql.SchemaTypes,
    sources: Mapping[tuple[str, str], schema_sql.QuerySource],
) -> Plan:
    """Plan the package; raise PluginError listing every problem found."""
    planner = Planner(request, options, found)
    qp = QueryPlanner(planner, sources)
    errors: list[str] = []
    tables = []
    for key in planner.tables:
        try:
            tables.append(qp.table_model(key))
        except PluginError as exc:
            errors.append(str(exc))
    enums = [
        EnumClass(
            name=planner.class_names[("enum", *key)],
            doc=e.comment,
            members=list(
                zip(names.unique(names.enum_member(v) for v in e.values), e.values, strict=True)
            ),
            pg_name=_qualified(*key),
        )
        for key, e in planner.enum_defs.items()
    ]
    modules: dict[str, ModulePlan] = {}
    taken: dict[str, set[str]] = {}
    seen: dict[str, str] = {}
    bases: dict[str, set[str]] = {}
    for query in request.queries:
        bases.setdefault(module_name(query.filename), set()).update(
            (function_name(query.name), names.constant(query.name))
        )
    for query in request.queries:
        name = module_name(query.filename)
        if name in PACKAGE_MODULES:
            errors.append(f"{query.filename}: a query file cannot be named {name}.sql")
            continue
        module = modules.setdefault(name, ModulePlan(name, query.filename))
        if module.source != query.filename:
            errors.append(
                f"{query.filename}: module {name} already comes from {module.source}; "
                "rename one of the query files"
            )
            continue
        if query.name in seen:
            errors.append(
                f"{query.filename}: query {query.name}: duplicate query name "
                f"(also in {seen[query.name]})"
            )
            continue
        seen[query.name] = query.filename
        try:
            module.queries.append(
                qp.plan(query, module, taken.setdefault(name, set()), bases[name])
            )
        except PluginError as exc:
            errors.append(str(exc))
    for o in options.overrides:
        if o.index in planner.used_overrides or o.db_type is not None:
            continue
        if o.query and o.query not in seen:
            errors.append(f"plugin option {o.describe()}: no query named {o.query}")
        elif o.column is not None and not _column_exists(planner, o.column):
            errors.append(f"plugin option {o.describe()}: no column {'.'.join(o.column)}")
    for key in sorted(planner.used_table_types):
        qp.table_model(key).pg_name = _qualified(*key)
    if errors:
        raise PluginError("\n".join(errors))
    attributes = names.unique(
        (m + "_" if m in RESERVED else m for m in sorted(modules)),
        taken=("conn", "on_error"),
    )
    for attribute, mod_name in zip(attributes, sorted(modules), strict=True):
        module = modules[mod_name]
        module.attribute = attribute
        used = taken.setdefault(mod_name, set())
        module.bound = names.unique([names.camel(mod_name) + "Queries"], used)[0]
        used.add(module.bound)
        module.bound_async = names.unique([f"Async{module.bound}"], used)[0]
        used.add(module.bound_async)
    composites = _composite_order(planner)
    model_imports = {i for cls in (*tables, *composites) for f in cls.fields for i in f.imports}
    return Plan(
        sqlc_version=request.sqlc_version,
        options=options,
        enums=enums,
        composites=composites,
        tables=tables,
        modules=[modules[k] for k in sorted(modules)],
        model_imports=model_imports,
        domains=sorted(planner.domains),
    )


_CALL = re.compile(r"(?:\b([A-Za-z_][A-Za-z0-9_]*)\s*\.\s*)?\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _find_comment(comments: Mapping[tuple[str, str], str], schema: str, name: str) -> str:
    if (schema, name) in comments:
        return comments[(schema, name)]
    if schema:
        return ""
    matches = [v for (_, n), v in comments.items() if n == name]
    return matches[0] if len(matches) == 1 else ""


def _column_exists(planner: Planner, column: tuple[str, str, str]) -> bool:
    schema, table, col = column
    key = planner.user_key(planner.tables, schema, table)
    return key is not None and any(c.name == col for c in planner.tables[key].columns)
