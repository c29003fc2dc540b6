"""Is the schema distributable by tenant on Citus? A checker of function bodies and the catalog.

DESIGN.md, "Scale beyond one server": every tenant table's keys lead with `user_id` (`id` for
`users`, the tenant itself), and every statement on a tenant table names `user_id` by value,
so that Citus routes it to the one shard of one tenant.

`check_source` reads a function body (plpgsql or sql) with a small tokenizer: it splits the
body into statements (at semicolons and PL/pgSQL block keywords, outside quotes, dollar quotes,
comments, parentheses and CASE expressions), finds each statement's query levels (every
parenthesised SELECT is one, and so is each arm of a UNION), the tenant tables each level names
(FROM, JOIN, UPDATE, INSERT INTO, DELETE FROM, USING, a FROM list) and the equalities in its
WHERE and ON conjuncts. A table is pinned to one tenant when a top-level conjunct says
`<alias>.user_id = <variable or parameter>`, or `<alias>.user_id = <pinned alias>.user_id`
(a join or a correlated subquery). `user_id = ANY (...)`, a function call or a disjunct does
not pin. An INSERT into a tenant table lists `user_id` and gives it a variable or a pinned
column. A statement that deliberately reads every tenant (an operator job listing the tenants
it then works on one at a time) is accepted when the line(s) right before it carry a
`-- all tenants: <why>` comment, and only when it neither writes nor locks.

`catalog_violations` checks what the catalog says: keys, foreign keys, policies, and that the
trigger functions of tenant tables touch no table (on Citus they run on a worker's shard).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import psycopg

# Not tenant tables although they may hold a user_id: the lookup of cross-tenant unique values
# (distributed by its own key), the reference table of session limits, and the materialized
# view that stays on the coordinator.
EXCEPTED = frozenset({"tenant_lookup", "session_limits", "dashboard_metrics"})
# The column a tenant table is distributed by: users is the tenant itself (its generated
# user_id equals id, and every foreign key references users (id)).
KEY_COLUMN = {"users": "id"}
ALL_TENANTS_MARK = re.compile(r"--\s*all tenants:\s*\S")


def key_column(table: str) -> str:
    """The distribution column of tenant table `table`."""
    return KEY_COLUMN.get(table, "user_id")


@dataclass(frozen=True)
class Violation:
    """One thing that keeps the schema from being distributed by tenant."""

    rule: str  # keys, foreign-keys, policies, statements, triggers
    where: str  # the table, policy or function
    what: str  # what is wrong
    excerpt: str = ""  # the statement, for the statement rule

    def __str__(self) -> str:
        text = f"[{self.rule}] {self.where}: {self.what}"
        return text + (f"\n    {self.excerpt}" if self.excerpt else "")


# ===== tokenizer ==============================================================


@dataclass(frozen=True)
class Token:
    kind: str  # word, qword, string, number, param, op, (, ), ;, ","
    text: str
    line: int  # 1-based line within the source, as PL/pgSQL counts (line 1 follows the $$)
    start: int = 0  # offsets of the token in the source
    end: int = 0

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


@dataclass
class Lexed:
    tokens: list[Token]
    # Lines that hold nothing but a comment: line number -> the comment's text.
    comment_lines: dict[int, str]


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*)
  | (?P<block>/\*)
  | (?P<dollar>\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<param>\$\d+)
  | (?P<string>[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*')
  | (?P<qword>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<op>::|:=|=>|<=|>=|<>|!=|\|\||->>|->|\#>>|<<|>>)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(source: str) -> Lexed:
    """Split SQL or PL/pgSQL text into tokens, dropping whitespace and comments."""
    tokens: list[Token] = []
    comments: dict[int, str] = {}
    pos, line = 0, 1
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:  # pragma: no cover - punct matches any character
            break
        kind, start, pos = m.lastgroup or "punct", m.start(), m.end()
        if kind == "block":  # /* ... */, nested
            depth = 1
            while depth and pos < len(source):
                if source.startswith("/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif source.startswith("*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
        elif kind == "dollar":  # $tag$ ... $tag$
            end = source.find(m.group(), pos)
            pos = len(source) if end < 0 else end + len(m.group())
            kind = "string"
        if kind == "comment":
            comments.setdefault(line, m.group())
        elif kind == "qword":
            tokens.append(Token(kind, m.group()[1:-1].replace('""', '"'), line, start, pos))
        elif kind == "punct" and m.group() in "();,":
            tokens.append(Token(m.group(), m.group(), line, start, pos))
        elif kind not in ("space", "block"):
            tokens.append(
                Token("op" if kind == "punct" else kind, source[start:pos], line, start, pos)
            )
        line += source.count("\n", start, pos)
    code_lines = {t.line for t in tokens}
    comment_lines = {ln: text for ln, text in comments.items() if ln not in code_lines}
    return Lexed(tokens, comment_lines)


# ===== statements =============================================================

# PL/pgSQL keywords that end one statement (or expression) and start the next, outside
# parentheses and CASE expressions.
_BLOCK_WORDS = frozenset(
    {"BEGIN", "DECLARE", "EXCEPTION", "THEN", "LOOP", "ELSE", "ELSIF", "WHEN", "END"}
)


@dataclass
class Statement:
    tokens: list[Token]
    marked: bool  # right after a `-- all tenants: <why>` comment
    source: str = ""

    @property
    def line(self) -> int:
        return self.tokens[0].line

    def excerpt(self, limit: int = 160) -> str:
        """The statement's text on one line, comments dropped, cut at `limit` characters."""
        pieces = [self.source[t.start : t.end] for t in self.tokens]
        text = ""
        for k, piece in enumerate(pieces):
            gap = self.source[self.tokens[k - 1].end : self.tokens[k].start] if k else ""
            text += (" " if gap else "") + re.sub(r"\s+", " ", piece)
        return text if len(text) <= limit else text[: limit - 1] + "…"


def split_statements(source: str, language: str = "plpgsql") -> list[Statement]:
    """The SQL statements and expressions of a function body, in order.

    Semicolons outside parentheses split SQL; in PL/pgSQL so do the block keywords (THEN,
    LOOP, ELSE, END...), except inside a CASE expression, so an IF's condition, a FOR loop's
    query and each statement of the loop are separate statements.
    """
    lexed = tokenize(source)
    plpgsql = language == "plpgsql"
    statements: list[Statement] = []
    current: list[Token] = []
    depth = 0
    case_depths: list[int] = []  # paren depth of each open CASE expression

    def flush() -> None:
        if current:
            # The mark sits above the statement, or above its query inside it (FOR x IN
            # -- all tenants: ... SELECT ...).
            query = next((t for t in current if t.up in _QUERY_STARTS), current[0])
            marked = _is_marked(current[0].line, lexed) or _is_marked(query.line, lexed)
            statements.append(Statement(list(current), marked, source))
            current.clear()

    for k, tok in enumerate(lexed.tokens):
        if tok.kind == "(":
            depth += 1
        elif tok.kind == ")":
            depth -= 1
        if depth == 0 and tok.kind == ";":
            flush()
            case_depths.clear()
            continue
        word = tok.up
        if plpgsql and depth == 0:
            in_case = bool(case_depths) and case_depths[-1] == depth
            if word == "CASE" and current:
                case_depths.append(depth)
            elif word == "END" and in_case:
                case_depths.pop()
            elif word in _BLOCK_WORDS and not in_case:
                previous = lexed.tokens[k - 1].up if k else ""
                if not (word == "EXCEPTION" and previous == "RAISE"):
                    flush()
                    continue
        elif word == "CASE":
            case_depths.append(depth)
        elif word == "END" and case_depths and case_depths[-1] == depth:
            case_depths.pop()
        current.append(tok)
    flush()
    return statements


def _is_marked(line: int, lexed: Lexed) -> bool:
    """Whether the comment lines right above `line` say `-- all tenants: <why>`."""
    above = line - 1
    while above in lexed.comment_lines:
        if ALL_TENANTS_MARK.search(lexed.comment_lines[above]):
            return True
        above -= 1
    return False


# ===== query levels ===========================================================

_QUERY_STARTS = frozenset({"SELECT", "WITH", "VALUES", "INSERT", "UPDATE", "DELETE", "TABLE"})
_SET_OPERATORS = frozenset({"UNION", "INTERSECT", "EXCEPT"})
_RELATION_BEFORE = frozenset(
    {"FROM", "JOIN", "UPDATE", "INTO", "USING", "ONLY", "TABLE", "LOCK", "TRUNCATE"}
)
# Keywords that end a clause (a FROM list, a WHERE condition, a JOIN ... ON condition).
_JOINS = frozenset({"JOIN", "LEFT", "RIGHT", "FULL", "INNER", "CROSS", "NATURAL"})
_TAILS = frozenset({"GROUP", "HAVING", "WINDOW", "ORDER", "LIMIT", "OFFSET", "FETCH"}) | {
    "FOR",
    "RETURNING",
}
_CLAUSES = _JOINS | _TAILS | {"SELECT", "FROM", "WHERE", "SET", "VALUES", "ON", "USING", "INTO"}
_CLAUSES |= {"LATERAL", "DO", "UNION", "INTERSECT", "EXCEPT", "WHEN", "THEN", "LOOP"}
_NOT_ALIAS = _CLAUSES | {"AS", "WHERE", "DEFAULT", "OVERRIDING", "TABLESAMPLE", "IN", "NOWAIT"}


@dataclass
class Level:
    """One query level: tokens at its own nesting (relative depth), its parent level."""

    items: list[tuple[Token, int]]
    parent: Level | None
    relations: list[Relation] = field(default_factory=list)


@dataclass
class Relation:
    table: str  # name within schema keen
    alias: str
    level: Level
    role: str  # read, insert, update, delete
    position: int  # index in level.items of the table name


def _levels(tokens: Sequence[Token]) -> list[Level]:
    """Every query level of a statement (the statement itself first)."""
    found: list[Level] = []

    def build(toks: Sequence[Token], parent: Level | None) -> None:
        items: list[tuple[Token, int]] = []
        children: list[Sequence[Token]] = []
        i, rel = 0, 0
        while i < len(toks):
            tok = toks[i]
            if tok.kind == "(":
                if i + 1 < len(toks) and toks[i + 1].up in _QUERY_STARTS:
                    # The whole parenthesised query is a child level; find its end.
                    depth, j = 1, i + 1
                    while j < len(toks) and depth:
                        depth += {"(": 1, ")": -1}.get(toks[j].kind, 0)
                        j += 1
                    children.append(toks[i + 1 : j - 1])
                    items.append((Token("op", "(subquery)", tok.line), rel))
                    i = j
                    continue
                items.append((tok, rel))
                rel += 1
            elif tok.kind == ")":
                rel -= 1
                items.append((tok, rel))
            else:
                items.append((tok, rel))
            i += 1
        # Each arm of a UNION / INTERSECT / EXCEPT is a level of its own.
        arm: list[tuple[Token, int]] = []
        arms: list[list[tuple[Token, int]]] = []
        for item in items:
            if item[1] == 0 and item[0].up in _SET_OPERATORS:
                arms.append(arm)
                arm = []
            else:
                arm.append(item)
        arms.append(arm)
        made = [Level(a, parent) for a in arms]
        found.extend(made)
        for child in children:
            build(child, made[0])

    build(tokens, None)
    for level in found:
        level.relations = _relations(level)
    return found


def _relations(level: Level) -> list[Relation]:
    """The keen tables `level` names as relations (not as types of variables)."""
    items = level.items
    found: list[Relation] = []
    for i in range(len(items) - 2):
        tok, rel = items[i]
        if not (
            tok.kind in ("word", "qword")
            and tok.text.lower() == "keen"
            and items[i + 1][0].text == "."
            and items[i + 2][0].kind in ("word", "qword")
        ):
            continue
        before = items[i - 1][0] if i else None
        if before is None:
            continue
        word = before.up
        inserting = word == "INTO" and i >= 2 and items[i - 2][0].up == "INSERT"
        merging = word == "INTO" and i >= 2 and items[i - 2][0].up == "MERGE"
        if i + 3 < len(items) and items[i + 3][0].kind == "(" and not inserting:
            continue  # a function call
        if word in _RELATION_BEFORE or (before.kind == "," and _in_from_list(items, i, rel)):
            pass
        else:
            continue
        if word == "INTO" and not (inserting or merging):
            continue  # SELECT ... INTO keen.x is not PL/pgSQL
        table = items[i + 2][0].text
        table = table if items[i + 2][0].kind == "qword" else table.lower()
        alias, j = table, i + 3
        if j < len(items) and items[j][0].up == "AS":
            j += 1
        if (
            j < len(items)
            and items[j][0].kind in ("word", "qword")
            and items[j][0].up not in _NOT_ALIAS
        ):
            alias = items[j][0].text
        role = "read"
        if merging:
            role = "merge"
        elif inserting:
            role = "insert"
        elif word == "UPDATE" and not (i >= 2 and items[i - 2][0].up in ("FOR", "KEY", "NO")):
            role = "update"
        elif word == "FROM" and i >= 2 and items[i - 2][0].up == "DELETE":
            role = "delete"
        elif word in ("LOCK", "TRUNCATE"):
            role = word.lower()
        elif word == "TABLE" and i >= 2 and items[i - 2][0].up in ("LOCK", "TRUNCATE"):
            role = items[i - 2][0].up.lower()
        elif word == "ONLY" and i >= 2 and items[i - 2][0].up in ("UPDATE", "FROM"):
            role = "update" if items[i - 2][0].up == "UPDATE" else "read"
        found.append(Relation(table, alias.lower(), level, role, i + 2))
    return found


def _in_from_list(items: list[tuple[Token, int]], i: int, rel: int) -> bool:
    """Whether the comma before items[i] separates entries of a FROM list."""
    for tok, r in reversed(items[:i]):
        if r == rel and tok.up in _CLAUSES:
            return tok.up in ("FROM", "JOIN", "USING")
    return False


# ===== predicates =============================================================

_PREDICATE_END = _JOINS | _TAILS | frozenset({"WHERE", "ON", "INTO", "LOOP", "DO"})


def _conjuncts(level: Level) -> list[list[tuple[Token, int]]]:
    """The top-level AND conjuncts of the level's WHERE and JOIN ... ON conditions."""
    items = level.items
    regions: list[list[tuple[Token, int]]] = []
    i = 0
    while i < len(items):
        tok, rel = items[i]
        if (
            rel == 0
            and tok.up in ("WHERE", "ON")
            and not (tok.up == "ON" and i + 1 < len(items) and items[i + 1][0].up == "CONFLICT")
        ):
            j = i + 1
            while j < len(items) and not (
                items[j][1] == 0 and (items[j][0].up in _PREDICATE_END or items[j][0].kind == ",")
            ):
                j += 1
            regions.append(items[i + 1 : j])
            i = j
        else:
            i += 1
    out: list[list[tuple[Token, int]]] = []
    for region in regions:
        out.extend(_split_and(region, 0))
    return out


def _split_and(region: list[tuple[Token, int]], base: int) -> list[list[tuple[Token, int]]]:
    parts: list[list[tuple[Token, int]]] = []
    part: list[tuple[Token, int]] = []
    between = False
    for tok, rel in region:
        if rel == base and tok.up == "BETWEEN":
            between = True
        if rel == base and tok.up == "AND":
            if between:
                between = False
            else:
                parts.append(part)
                part = []
                continue
        part.append((tok, rel))
    parts.append(part)
    out: list[list[tuple[Token, int]]] = []
    for p in parts:
        # A parenthesised conjunction: (a AND b) pins what a or b pins.
        if (
            len(p) >= 2
            and p[0][0].kind == "("
            and p[-1][0].kind == ")"
            and p[0][1] == base
            and p[-1][1] == base
            and all(r > base for _, r in p[1:-1])
        ):
            out.extend(_split_and(p[1:-1], base + 1))
        elif p:
            out.append(p)
    return out


@dataclass(frozen=True)
class Operand:
    kind: str  # column, value, any, other
    relation: Relation | None = None
    column: str = ""


def _resolve(level: Level, alias: str) -> Relation | None:
    scope: Level | None = level
    while scope is not None:
        for r in scope.relations:
            if r.alias == alias:
                return r
        scope = scope.parent
    return None


def _aliases(level: Level) -> set[str]:
    """Every alias a level can see, tenant table or not (FROM x AS a, CTE names, ...)."""
    seen: set[str] = set()
    scope: Level | None = level
    while scope is not None:
        for k, (tok, _) in enumerate(scope.items):
            if tok.up == "AS" and k + 1 < len(scope.items):
                seen.add(scope.items[k + 1][0].text.lower())
            if tok.up in ("FROM", "JOIN", "UPDATE", "USING") and k + 1 < len(scope.items):
                name = scope.items[k + 1][0]
                if name.kind in ("word", "qword") and not (
                    k + 2 < len(scope.items) and scope.items[k + 2][0].text == "."
                ):
                    seen.add(name.text.lower())
        scope = scope.parent
    return seen


def _operand(level: Level, toks: list[tuple[Token, int]]) -> Operand:
    words = [t for t, _ in toks]
    # Drop a trailing cast (::uuid) and wrapping parentheses.
    for k, t in enumerate(words):
        if t.text == "::":
            words = words[:k]
            break
    while len(words) >= 2 and words[0].kind == "(" and words[-1].kind == ")":
        words = words[1:-1]
    if not words:
        return Operand("other")
    if words[0].up in ("ANY", "SOME", "ALL"):
        return Operand("any")
    if len(words) == 1 and words[0].kind == "param":
        return Operand("value")
    names = [t for t in words if t.text != "."]
    dotted = (
        len(words) == 2 * len(names) - 1
        and all(t.text == "." for t in words[1::2])
        and all(t.kind in ("word", "qword") for t in names)
    )
    if not dotted or len(names) > 3:
        return Operand("other")
    first = names[0].text.lower()
    if len(names) == 1:
        # An unqualified column of the level's only relation, else a variable.
        column = first
        own = level.relations
        if column in ("user_id", "id") and len(own) == 1:
            return Operand("column", own[0], column)
        if (
            first in _aliases(level)
            or names[0].up in _NOT_ALIAS
            or names[0].up
            in (
                "NULL",
                "TRUE",
                "FALSE",
            )
        ):
            return Operand("other")
        return Operand("value")
    relation = _resolve(level, first)
    if relation is not None:
        return Operand("column", relation, names[-1].text.lower())
    if len(names) == 3 and first == "keen":
        return Operand("other")
    if first in _aliases(level):
        return Operand("other")  # a column of a CTE or of a non-tenant relation
    return Operand("value")  # a record variable's field: v_token.user_id, NEW.user_id


def _equalities(level: Level) -> list[tuple[Operand, Operand]]:
    pairs: list[tuple[Operand, Operand]] = []
    for conjunct in _conjuncts(level):
        base = min(r for _, r in conjunct)
        eq = [k for k, (t, r) in enumerate(conjunct) if r == base and t.text == "="]
        ors = [t for t, r in conjunct if r == base and t.up == "OR"]
        if len(eq) != 1 or ors:
            continue
        left, right = conjunct[: eq[0]], conjunct[eq[0] + 1 :]
        lefts, rights = _row(left), _row(right)
        if lefts and rights and len(lefts) == len(rights):
            # (a, b) = (x, y) is a = x AND b = y (PostgreSQL rewrites it so).
            pairs.extend(
                (_operand(level, a), _operand(level, b)) for a, b in zip(lefts, rights, strict=True)
            )
        else:
            pairs.append((_operand(level, left), _operand(level, right)))
    pairs.extend(_using_pairs(level))
    return pairs


def _using_pairs(level: Level) -> list[tuple[Operand, Operand]]:
    """`JOIN keen.b AS b USING (user_id)`: b's user_id equals that of each table before it."""
    pairs: list[tuple[Operand, Operand]] = []
    items = level.items
    for n, r in enumerate(level.relations):
        k = r.position + 1
        while k < len(items) and items[k][0].up not in ("USING", "ON", "JOIN", "WHERE", ","):
            k += 1
        if not (k + 1 < len(items) and items[k][0].up == "USING" and items[k + 1][0].kind == "("):
            continue
        base = items[k + 1][1]
        columns: list[str] = []
        k += 2
        while k < len(items) and not (items[k][0].kind == ")" and items[k][1] == base):
            columns.append(items[k][0].text.lower())
            k += 1
        for left in level.relations[:n]:
            for column in ("user_id", "id"):
                if column in columns:
                    pairs.append((Operand("column", r, column), Operand("column", left, column)))
    return pairs


def _row(toks: list[tuple[Token, int]]) -> list[list[tuple[Token, int]]]:
    """The fields of a row constructor `(a, b)` or `ROW(a, b)` ([] for anything else)."""
    if toks and toks[0][0].up == "ROW":
        toks = toks[1:]
    if len(toks) < 2 or toks[0][0].kind != "(" or toks[-1][0].kind != ")":
        return []
    base = toks[0][1]
    inner = toks[1:-1]
    if any(r <= base for _, r in inner):
        return []  # (a) + (b): two groups, not one row
    fields = _split_commas(inner, base + 1)
    return fields if len(fields) > 1 else []


# ===== the statement check ====================================================


def _is_key(op: Operand) -> bool:
    return (
        op.kind == "column"
        and op.relation is not None
        and op.column == key_column(op.relation.table)
    )


def check_statement(statement: Statement, tenant_tables: Iterable[str]) -> list[str]:
    """What keeps one statement from running on one tenant's shard ([] when nothing)."""
    tenants = set(tenant_tables)
    dynamic = _dynamic_tables(statement.tokens, tenants)
    if dynamic:
        return [
            f"dynamic SQL (EXECUTE) on keen.{t}: write it as a static statement" for t in dynamic
        ]
    levels = _levels(statement.tokens)
    relations = [r for lv in levels for r in lv.relations if r.table in tenants]
    if not relations:
        return []
    equalities = [(lv, a, b) for lv in levels for a, b in _equalities(lv)]

    pinned: set[int] = set()
    changed = True
    while changed:
        changed = False
        for _, a, b in equalities:
            for x, y in ((a, b), (b, a)):
                if not _is_key(x) or x.relation is None or id(x.relation) in pinned:
                    continue
                if y.kind == "value" or (
                    _is_key(y) and y.relation is not None and id(y.relation) in pinned
                ):
                    pinned.add(id(x.relation))
                    changed = True

    problems: list[str] = []
    for r in relations:
        if r.role == "insert":
            problem = _insert_problem(r, levels, pinned)
            if problem:
                problems.append(problem)
            continue
        if id(r) in pinned:
            continue
        key = key_column(r.table)
        about = [
            (x, y)
            for _, a, b in equalities
            for x, y in ((a, b), (b, a))
            if x.kind == "column" and x.relation is r
        ]
        if any(y.kind == "any" and x.column == key for x, y in about):
            why = f"{key} = ANY (...) is not one tenant"
        elif any(_is_key(x) and y.kind == "column" for x, y in about):
            why = f"joined on {key} only with a table that is not pinned to one tenant"
        elif any(_is_key(x) for x, _ in about):
            why = f"{key} is compared with an expression, not a variable or parameter"
        elif r.table == "users" and any(
            x.column == "user_id" and y.kind == "value" for x, y in about
        ):
            why = "users is distributed by id: name id = <variable>, not user_id"
        elif r.role in ("lock", "truncate"):
            why = "a table-wide statement takes every shard"
        else:
            why = f"no {key} = <variable> predicate"
        problem = f"{r.role} of keen.{r.table} AS {r.alias}: {why}"
        if problem not in problems:
            problems.append(problem)

    if statement.marked and problems:
        writes = [r for r in relations if r.role != "read"]
        locks = _locks(statement.tokens)
        if writes:
            return [f"marked `all tenants` but writes keen.{writes[0].table}", *problems]
        if locks:
            return [f"marked `all tenants` but locks rows ({locks})", *problems]
        return []
    return problems


def _dynamic_tables(tokens: Sequence[Token], tenants: set[str]) -> list[str]:
    """The tenant tables named in the strings of an EXECUTE statement (which no check reads)."""
    if not any(t.up == "EXECUTE" for t in tokens):
        return []
    found: list[str] = []
    for t in tokens:
        if t.kind == "string":
            for name in re.findall(r'keen\s*\.\s*"?(\w+)', t.text, re.IGNORECASE):
                if name.lower() in tenants and name.lower() not in found:
                    found.append(name.lower())
    return found


def _locks(tokens: Sequence[Token]) -> str:
    for k, t in enumerate(tokens):
        if t.up == "FOR" and k + 1 < len(tokens):
            nxt = " ".join(x.up for x in tokens[k + 1 : k + 4])
            for form in ("UPDATE", "SHARE", "NO KEY UPDATE", "KEY SHARE"):
                if nxt.startswith(form):
                    return "FOR " + form
    return ""


def _insert_problem(r: Relation, levels: list[Level], pinned: set[int]) -> str:
    """Why an INSERT into tenant table r does not give its key a value ('' when it does)."""
    key = key_column(r.table)
    items = r.level.items
    j = r.position + 1
    if j < len(items) and items[j][0].up == "AS":
        j += 2
    if j >= len(items) or items[j][0].kind != "(":
        return f"insert into keen.{r.table}: no column list naming {key}"
    base = items[j][1]
    columns: list[str] = []
    k = j + 1
    while k < len(items) and not (items[k][0].kind == ")" and items[k][1] == base):
        if items[k][0].kind in ("word", "qword"):
            columns.append(items[k][0].text.lower())
        k += 1
    if key not in columns:
        return f"insert into keen.{r.table}: {key} not given (columns: {', '.join(columns)})"
    position = columns.index(key)
    rest = items[k + 1 :]
    if rest and rest[0][0].up == "VALUES":
        rows: list[list[tuple[Token, int]]] = []
        q = 1
        while q < len(rest) and rest[q][0].kind == "(":
            depth0 = rest[q][1]
            end = q + 1
            while end < len(rest) and not (rest[end][0].kind == ")" and rest[end][1] == depth0):
                end += 1
            rows.append(rest[q + 1 : end])
            q = end + 1
            if q < len(rest) and rest[q][0].kind == ",":
                q += 1
            else:
                break
        for row in rows:
            values = _split_commas(row, base + 1)
            if position >= len(values):
                return f"insert into keen.{r.table}: cannot find the {key} value"
            op = _operand(r.level, values[position])
            if op.kind != "value":
                return f"insert into keen.{r.table}: {key} is not given a variable or parameter"
        return ""
    if rest and rest[0][0].up == "SELECT":
        end = 1
        while end < len(rest) and not (
            rest[end][1] == 0 and rest[end][0].up in ("FROM", "INTO", "WHERE")
        ):
            end += 1
        values = _split_commas(rest[1:end], 0)
        if position >= len(values):
            return f"insert into keen.{r.table}: cannot find the {key} value"
        op = _operand(r.level, values[position])
        if op.kind == "value" or (
            op.kind == "column" and op.relation is not None and id(op.relation) in pinned
        ):
            return ""
        return f"insert into keen.{r.table}: {key} comes from no variable or pinned table"
    return f"insert into keen.{r.table}: {key} value not found"


def _split_commas(items: list[tuple[Token, int]], base: int) -> list[list[tuple[Token, int]]]:
    out: list[list[tuple[Token, int]]] = [[]]
    for tok, rel in items:
        if tok.kind == "," and rel == base:
            out.append([])
        else:
            out[-1].append((tok, rel))
    return out


def check_source(
    source: str, tenant_tables: Iterable[str], language: str = "plpgsql"
) -> list[tuple[Statement, str]]:
    """Every statement of a function body that is not single-tenant, with the reason."""
    tenants = set(tenant_tables)
    found: list[tuple[Statement, str]] = []
    for statement in split_statements(source, language):
        for problem in check_statement(statement, tenants):
            found.append((statement, problem))
    return found


def tables_touched(source: str, language: str = "plpgsql") -> list[str]:
    """The keen relations a function body names as relations (any table, tenant or not)."""
    names: list[str] = []
    for statement in split_statements(source, language):
        for level in _levels(statement.tokens):
            for r in level.relations:
                if r.table not in names:
                    names.append(r.table)
    return names


def functions_called(source: str) -> list[str]:
    """The keen functions a body calls (by name)."""
    toks = tokenize(source).tokens
    names: list[str] = []
    for k in range(len(toks) - 3):
        if (
            toks[k].text.lower() == "keen"
            and toks[k + 1].text == "."
            and toks[k + 2].kind == "word"
            and toks[k + 3].kind == "("
        ):
            name = toks[k + 2].text.lower()
            if name not in names:
                names.append(name)
    return names


# ===== the catalog ============================================================

TENANT_TABLES = """
  SELECT c.relname
  FROM pg_catalog.pg_class AS c
  WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'p')
    AND NOT (c.relname = ANY (%(excepted)s))
    AND EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped)
  ORDER BY 1
"""


def tenant_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [str(r[0]) for r in conn.execute(TENANT_TABLES, {"excepted": sorted(EXCEPTED)})]


def key_violations(
    conn: psycopg.Connection[tuple[object, ...]], tenants: list[str]
) -> list[Violation]:
    found: list[Violation] = []
    for table in tenants:
        key = key_column(table)
        rows = conn.execute(
            """
            SELECT ic.relname, i.indisprimary,
                   (SELECT a.attname FROM pg_catalog.pg_attribute AS a
                    WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]),
                   pg_catalog.pg_get_indexdef(i.indexrelid), i.indisexclusion
            FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = ('keen.' || pg_catalog.quote_ident(%s))::regclass
              AND (i.indisunique OR i.indisexclusion)
            ORDER BY 1
            """,
            [table],
        ).fetchall()
        if not any(primary for _, primary, _, _, _ in rows):
            found.append(Violation("keys", f"keen.{table}", "no primary key"))
        for name, primary, first, definition, _ in rows:
            if first != key:
                kind = "primary key" if primary else "unique index"
                found.append(
                    Violation(
                        "keys",
                        f"keen.{table}",
                        f"{kind} {name} does not lead with {key}: {definition}",
                    )
                )
    return found


def foreign_key_violations(
    conn: psycopg.Connection[tuple[object, ...]], tenants: list[str]
) -> list[Violation]:
    rows = conn.execute(
        """
        SELECT con.conname, src.relname, dst.relname,
               ARRAY(SELECT a.attname::text
                     FROM unnest(con.conkey) WITH ORDINALITY AS k(n, o)
                     JOIN pg_catalog.pg_attribute AS a
                       ON a.attrelid = con.conrelid AND a.attnum = k.n
                     ORDER BY k.o),
               ARRAY(SELECT a.attname::text
                     FROM unnest(con.confkey) WITH ORDINALITY AS k(n, o)
                     JOIN pg_catalog.pg_attribute AS a
                       ON a.attrelid = con.confrelid AND a.attnum = k.n
                     ORDER BY k.o),
               con.confdelsetcols IS NOT NULL AND cardinality(con.confdelsetcols) > 0,
               pg_catalog.pg_get_constraintdef(con.oid, true)
        FROM pg_catalog.pg_constraint AS con
        JOIN pg_catalog.pg_class AS src ON src.oid = con.conrelid
        JOIN pg_catalog.pg_class AS dst ON dst.oid = con.confrelid
        WHERE con.contype = 'f' AND src.relnamespace = 'keen'::regnamespace
        ORDER BY 2, 1
        """
    ).fetchall()
    found: list[Violation] = []
    edges: dict[str, set[str]] = {}
    for name, src, dst, col_list, refcol_list, set_cols, definition in rows:
        cols, refcols = cast("list[str]", col_list), cast("list[str]", refcol_list)
        where = f"keen.{src}.{name}"
        if src in tenants and dst in tenants:
            edges.setdefault(src, set()).add(dst)
            src_key, dst_key = key_column(src), key_column(dst)
            paired = [
                (c, rc)
                for c, rc in zip(cols, refcols, strict=True)
                if c == src_key and rc == dst_key
            ]
            if not paired:
                found.append(
                    Violation(
                        "foreign-keys",
                        where,
                        f"does not pair {src_key} with keen.{dst}.{dst_key}: {definition}",
                    )
                )
            if set_cols:
                found.append(
                    Violation("foreign-keys", where, f"ON DELETE with a column list: {definition}")
                )
        elif (src in tenants) != (dst in tenants) and "session_limits" not in (src, dst):
            found.append(
                Violation(
                    "foreign-keys",
                    where,
                    f"between a tenant table and keen.{dst if src in tenants else src}, which is "
                    f"not co-located with it: {definition}",
                )
            )
    for cycle in _cycles(edges):
        found.append(
            Violation(
                "foreign-keys", " -> ".join(f"keen.{t}" for t in cycle), "a cycle of foreign keys"
            )
        )
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One representative of each cycle (self-references aside) in a small graph."""
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(path: list[str]) -> None:
        for nxt in sorted(edges.get(path[-1], ())):
            if nxt == path[0] and len(path) > 1:
                key = frozenset(path)
                if key not in seen:
                    seen.add(key)
                    cycles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:
                walk([*path, nxt])

    for start in sorted(edges):
        walk([start])
    return cycles


def policy_violations(
    conn: psycopg.Connection[tuple[object, ...]], tenants: list[str]
) -> list[Violation]:
    found: list[Violation] = []
    rows = conn.execute(
        """
        SELECT p.tablename, p.policyname, coalesce(p.qual, ''), coalesce(p.with_check, '')
        FROM pg_catalog.pg_policies AS p WHERE p.schemaname = 'keen' ORDER BY 1, 2
        """
    ).fetchall()
    for table, policy, qual, check in rows:
        qual, check = str(qual), str(check)
        if table not in tenants:
            continue
        for what, text in (("USING", qual), ("WITH CHECK", check)):
            if re.search(r"\bSELECT\b", text, re.IGNORECASE):
                found.append(
                    Violation(
                        "policies",
                        f"keen.{table} policy {policy}",
                        f"{what} has a sub-SELECT (call keen.current_user_id() directly): {text}",
                    )
                )
    return found


def keen_functions(
    conn: psycopg.Connection[tuple[object, ...]],
) -> list[tuple[str, str, str, str]]:
    """(name, signature, language, source) of every keen function in plpgsql or sql."""
    return [
        (str(name), str(sig), str(lang), str(src))
        for name, sig, lang, src in conn.execute(
            """
            SELECT p.proname, p.oid::regprocedure::text, l.lanname,
                   -- A BEGIN ATOMIC body is kept parsed, not in prosrc.
                   CASE WHEN p.prosqlbody IS NULL THEN p.prosrc
                        ELSE pg_catalog.pg_get_function_sqlbody(p.oid) END
            FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
            WHERE p.pronamespace = 'keen'::regnamespace AND l.lanname IN ('plpgsql', 'sql')
            ORDER BY 2
            """
        )
    ]


def statement_violations(
    functions: list[tuple[str, str, str, str]], tenants: list[str]
) -> list[Violation]:
    found: list[Violation] = []
    for _, signature, language, source in functions:
        for statement, problem in check_source(source, tenants, language):
            found.append(
                Violation(
                    "statements",
                    f"{signature} line {statement.line}",
                    problem,
                    statement.excerpt(),
                )
            )
    return found


def trigger_violations(
    conn: psycopg.Connection[tuple[object, ...]],
    functions: list[tuple[str, str, str, str]],
    tenants: list[str],
) -> list[Violation]:
    """Trigger functions of tenant tables that touch a table, directly or through a call."""
    bodies = {name: (lang, src) for name, _, lang, src in functions}
    touched: dict[str, list[str]] = {}

    def touches(name: str, trail: tuple[str, ...] = ()) -> list[str]:
        if name in touched:
            return touched[name]
        if name not in bodies or name in trail:
            return []
        lang, src = bodies[name]
        result = [f"keen.{t}" for t in tables_touched(src, lang)]
        for callee in functions_called(src):
            for t in touches(callee, (*trail, name)):
                entry = f"{t} (through keen.{callee})" if "(through" not in t else t
                if entry not in result:
                    result.append(entry)
        touched[name] = result
        return result

    rows = conn.execute(
        """
        SELECT DISTINCT c.relname, p.proname
        FROM pg_catalog.pg_trigger AS t
        JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
        WHERE NOT t.tgisinternal AND c.relnamespace = 'keen'::regnamespace
        ORDER BY 2, 1
        """
    ).fetchall()
    found: list[Violation] = []
    for table, function in rows:
        if table not in tenants:
            continue
        tables = touches(str(function))
        if tables:
            found.append(
                Violation(
                    "triggers",
                    f"keen.{function}() on keen.{table}",
                    "touches " + ", ".join(tables),
                )
            )
    return found


def catalog_violations(conn: psycopg.Connection[tuple[object, ...]]) -> list[Violation]:
    """Everything in the database at `conn` that keeps it from distributing by tenant."""
    tenants = tenant_tables(conn)
    functions = keen_functions(conn)
    return [
        *key_violations(conn, tenants),
        *foreign_key_violations(conn, tenants),
        *policy_violations(conn, tenants),
        *trigger_violations(conn, functions, tenants),
        *statement_violations(functions, tenants),
    ]


def main() -> None:
    """Print the violations of a migrated database: the work list while fixing them.

    `python -m tests_py.support.distributable --database-url URL` (default: the checkout's
    embedded cluster, migrated into a scratch database that is dropped afterwards).
    """
    import argparse
    from collections import Counter

    from keen_dev.databases import scratch_database, server_url

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--database-url", help="a migrated database (default: a scratch one)")
    args = parser.parse_args()
    if args.database_url:
        with psycopg.connect(args.database_url) as conn:
            found = catalog_violations(conn)
    else:
        with (
            scratch_database(server_url(), "distcheck", migrate=True) as (_, url),
            psycopg.connect(url) as conn,
        ):
            found = catalog_violations(conn)
    for violation in found:
        print(violation)
    print(dict(Counter(v.rule for v in found)), len(found), "in all")


if __name__ == "__main__":
    main()
