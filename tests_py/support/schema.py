"""The declarative schema of schema/ and a comparable picture of what a database holds.

`apply_schema` builds a database the way a reader of schema/ expects: every file in name
order through psql, one transaction per file. `catalog_snapshot` describes everything of
ours in a database as sorted text lines (no OIDs, no physical positions), so two databases
built different ways can be compared with a unified diff.

The comparison is strict on purpose: columns are compared in table order (a column that a
later migration adds goes last, so schema/ lists it last too), function bodies verbatim,
ACLs as sets, every comment.
"""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Iterable
from pathlib import Path

import psycopg
from keen_dev.databases import CHECKOUT

SCHEMA_DIR = CHECKOUT / "schema"

# yoyo's bookkeeping lives in `public` of a migrated database; it is not part of the schema.
YOYO_TABLES = ("_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock")
OUR_ROLES = ("keen_owner", "keen_app", "keen_analytics")

# Schemas that may hold objects of ours: all but the system's, the pgTAP schema of a test
# run, and schemas that belong to an extension (`public` is in: nothing of ours belongs there).
_USER_NAMESPACES = """
  SELECT n.oid FROM pg_catalog.pg_namespace AS n
  WHERE n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'tap')
    AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                    WHERE d.classid = 'pg_catalog.pg_namespace'::regclass
                      AND d.objid = n.oid AND d.deptype = 'e')
"""

# A sorted, stable text form of an ACL (grant order is not part of its meaning); NULL means
# the built-in defaults (for a function: PUBLIC may execute it).
_ACL = (
    "CASE WHEN {0} IS NULL THEN 'acl=default' ELSE 'acl=' || "
    "array_to_string(ARRAY(SELECT a::text FROM unnest({0}) AS a ORDER BY 1), ',') END"
)


def _not_yoyo(relation: str) -> str:
    """SQL condition: relation `relation` (or the table of that index) is not yoyo's."""
    names = ", ".join(f"'{name}'" for name in YOYO_TABLES)
    return (
        "NOT EXISTS (SELECT FROM pg_catalog.pg_class AS y WHERE y.oid = coalesce("
        f"(SELECT yi.indrelid FROM pg_catalog.pg_index AS yi WHERE yi.indexrelid = {relation}),"
        f" {relation}) AND y.relnamespace = 'public'::regnamespace AND y.relname IN ({names}))"
    )


_SECTIONS: dict[str, str] = {
    "schema": f"""
      SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner), {_ACL.format("n.nspacl")},
             coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), '-')
      FROM pg_catalog.pg_namespace AS n WHERE n.oid IN ({_USER_NAMESPACES})
    """,
    "relation": f"""
      SELECT c.oid::regclass::text, c.relkind, c.relpersistence,
             pg_catalog.pg_get_userbyid(c.relowner), {_ACL.format("c.relacl")},
             'rls=' || c.relrowsecurity || ' force=' || c.relforcerowsecurity,
             coalesce(array_to_string(c.reloptions, ','), '-'),
             coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '-')
      FROM pg_catalog.pg_class AS c
      WHERE c.relnamespace IN ({_USER_NAMESPACES}) AND c.relkind <> 't'
        AND {_not_yoyo("c.oid")}
    """,
    # Columns in their order within the table (attnum itself has gaps after a DROP COLUMN).
    "column": f"""
      SELECT c.oid::regclass::text,
             lpad((row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::text, 3, '0'),
             a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
             CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END,
             'default=' || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '-'),
             'generated=' || a.attgenerated::text || ' identity=' || a.attidentity::text,
             coalesce(co.collname, '-'), {_ACL.format("a.attacl")},
             coalesce(pg_catalog.col_description(c.oid, a.attnum), '-')
      FROM pg_catalog.pg_class AS c
      JOIN pg_catalog.pg_attribute AS a
        ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
      LEFT JOIN pg_catalog.pg_collation AS co
        ON co.oid = a.attcollation AND a.attcollation <> 'pg_catalog.default'::regcollation
      WHERE c.relnamespace IN ({_USER_NAMESPACES}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
        AND {_not_yoyo("c.oid")}
    """,
    "constraint": f"""
      SELECT coalesce(con.conrelid::regclass::text, con.contypid::regtype::text), con.conname,
             con.contype, pg_catalog.pg_get_constraintdef(con.oid, true),
             'deferrable=' || con.condeferrable || ' deferred=' || con.condeferred
               || ' valid=' || con.convalidated,
             coalesce(pg_catalog.obj_description(con.oid, 'pg_constraint'), '-')
      FROM pg_catalog.pg_constraint AS con
      WHERE con.connamespace IN ({_USER_NAMESPACES})
        AND {_not_yoyo("con.conrelid")}
    """,
    "index": f"""
      SELECT i.indrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid),
             'unique=' || i.indisunique || ' primary=' || i.indisprimary
               || ' nulls_not_distinct=' || i.indnullsnotdistinct
      FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
      WHERE c.relnamespace IN ({_USER_NAMESPACES})
        AND {_not_yoyo("i.indrelid")}
    """,
    "policy": """
      SELECT p.schemaname || '.' || p.tablename, p.policyname, p.permissive, p.cmd,
             array_to_string(ARRAY(SELECT r FROM unnest(p.roles) AS r ORDER BY 1), ','),
             'using=' || coalesce(p.qual, '-'), 'check=' || coalesce(p.with_check, '-')
      FROM pg_catalog.pg_policies AS p
    """,
    # The full definition carries language, volatility, strictness, SECURITY DEFINER,
    # parallel safety, cost and SET options; the attributes are listed again so a diff
    # names them.
    "function": f"""
      SELECT p.oid::regprocedure::text, p.prokind,
             pg_catalog.pg_get_userbyid(p.proowner), {_ACL.format("p.proacl")},
             'secdef=' || p.prosecdef || ' volatile=' || p.provolatile::text
               || ' parallel=' || p.proparallel::text || ' strict=' || p.proisstrict
               || ' leakproof=' || p.proleakproof,
             'config=' || coalesce(array_to_string(p.proconfig, ','), '-'),
             coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '-'),
             CASE WHEN p.prokind IN ('f', 'p', 'w')
                  THEN pg_catalog.pg_get_functiondef(p.oid) ELSE '-' END
      FROM pg_catalog.pg_proc AS p
      WHERE p.pronamespace IN ({_USER_NAMESPACES})
    """,
    "trigger": f"""
      SELECT t.tgrelid::regclass::text, t.tgname, pg_catalog.pg_get_triggerdef(t.oid, true),
             'enabled=' || t.tgenabled::text,
             coalesce(pg_catalog.obj_description(t.oid, 'pg_trigger'), '-')
      FROM pg_catalog.pg_trigger AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
      WHERE NOT t.tgisinternal AND c.relnamespace IN ({_USER_NAMESPACES})
    """,
    "rule": f"""
      SELECT r.ev_class::regclass::text, r.rulename, pg_catalog.pg_get_ruledef(r.oid, true)
      FROM pg_catalog.pg_rewrite AS r JOIN pg_catalog.pg_class AS c ON c.oid = r.ev_class
      WHERE r.rulename <> '_RETURN' AND c.relnamespace IN ({_USER_NAMESPACES})
    """,
    "view": f"""
      SELECT c.oid::regclass::text, pg_catalog.pg_get_viewdef(c.oid, true)
      FROM pg_catalog.pg_class AS c
      WHERE c.relkind IN ('v', 'm') AND c.relnamespace IN ({_USER_NAMESPACES})
    """,
    "sequence": f"""
      SELECT s.seqrelid::regclass::text, pg_catalog.format_type(s.seqtypid, NULL),
             s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle
      FROM pg_catalog.pg_sequence AS s JOIN pg_catalog.pg_class AS c ON c.oid = s.seqrelid
      WHERE c.relnamespace IN ({_USER_NAMESPACES})
    """,
    # Types of their own: enums, domains, composites, ranges (not a table's row type).
    "type": f"""
      SELECT t.oid::regtype::text, t.typtype, pg_catalog.pg_get_userbyid(t.typowner),
             {_ACL.format("t.typacl")},
             coalesce(pg_catalog.format_type(t.typbasetype, t.typtypmod), '-'),
             'notnull=' || t.typnotnull || ' default=' || coalesce(t.typdefault, '-'),
             coalesce(array_to_string(ARRAY(
               SELECT e.enumlabel FROM pg_catalog.pg_enum AS e
               WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder), ','), '-'),
             coalesce(pg_catalog.obj_description(t.oid, 'pg_type'), '-')
      FROM pg_catalog.pg_type AS t
      WHERE t.typnamespace IN ({_USER_NAMESPACES})
        AND (t.typtype IN ('e', 'd', 'r', 'm')
             OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class AS c
                                      WHERE c.oid = t.typrelid) = 'c'))
    """,
    "default_acl": f"""
      SELECT pg_catalog.pg_get_userbyid(d.defaclrole),
             coalesce(d.defaclnamespace::regnamespace::text, '-'), d.defaclobjtype,
             {_ACL.format("d.defaclacl")}
      FROM pg_catalog.pg_default_acl AS d
    """,
    "extension": f"""
      SELECT e.extname, e.extnamespace::regnamespace::text
      FROM pg_catalog.pg_extension AS e WHERE e.extnamespace IN ({_USER_NAMESPACES})
    """,
    "role": """
      SELECT r.rolname,
             'login=' || r.rolcanlogin || ' super=' || r.rolsuper || ' inherit=' || r.rolinherit
               || ' createrole=' || r.rolcreaterole || ' createdb=' || r.rolcreatedb
               || ' replication=' || r.rolreplication || ' bypassrls=' || r.rolbypassrls,
             array_to_string(ARRAY(
               SELECT m.roleid::regrole::text FROM pg_catalog.pg_auth_members AS m
               WHERE m.member = r.oid ORDER BY 1), ',')
      FROM pg_catalog.pg_roles AS r WHERE r.rolname LIKE 'keen\\_%'
    """,
}


def apply_schema(url: str, files: Iterable[Path] | None = None) -> None:
    """Apply the schema/ files (or `files`) to database `url` in order with psql.

    Each file runs in its own transaction and the first error stops everything, as yoyo
    does with a migration.
    """
    for path in sorted(SCHEMA_DIR.glob("*.sql")) if files is None else files:
        result = subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
                str(path),
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed on {path.name}:\n{result.stderr}")


def catalog_snapshot(url: str) -> list[str]:
    """Describe every object of ours in database `url`, one sorted line per object."""
    entries: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        # An empty search_path makes every name in the output schema-qualified.
        conn.execute("SET search_path = ''")
        for section, query in _SECTIONS.items():
            for row in conn.execute(query).fetchall():
                entries.append(section + " | " + " | ".join(str(v) for v in row))
    # Multi-line values (function bodies, view queries) become indented continuation lines
    # of their entry, so a diff shows the changed line, not the whole object.
    lines: list[str] = []
    for entry in sorted(entries):
        first, *rest = entry.rstrip("\n").split("\n")
        lines.append(first)
        lines.extend("    " + line for line in rest)
    return lines


def snapshot_diff(expected: list[str], actual: list[str], names: tuple[str, str]) -> str:
    """Return the unified diff of two snapshots ('' when they are equal)."""
    return "\n".join(
        difflib.unified_diff(expected, actual, fromfile=names[0], tofile=names[1], lineterm="")
    )


def leftovers(url: str, empty_url: str) -> list[str]:
    """List what of ours database `url` still holds that the empty database `empty_url` lacks.

    Objects, schemas, grants and default privileges count; a role of ours that still exists
    counts only when nothing in another database depends on it (roles are cluster-wide, and
    the rollback keeps a role that another database still uses).
    """
    baseline = set(catalog_snapshot(empty_url))
    found = [
        line
        for line in catalog_snapshot(url)
        if line not in baseline and not line.startswith(("role | ", "    "))
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        # pg_shdepend records every owner, ACL and policy reference to a role, per database
        # (dbid 0: shared objects such as databases).
        rows = conn.execute(
            """
            SELECT r.rolname,
                   count(d.*) FILTER (WHERE d.dbid = db.oid),
                   count(d.*) FILTER (WHERE d.dbid <> db.oid)
            FROM pg_catalog.pg_roles AS r
            CROSS JOIN (SELECT oid FROM pg_catalog.pg_database
                        WHERE datname = pg_catalog.current_database()) AS db
            LEFT JOIN pg_catalog.pg_shdepend AS d
              ON d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = r.oid
            WHERE r.rolname = ANY(%s)
            GROUP BY r.rolname
            """,
            [list(OUR_ROLES)],
        ).fetchall()
    for role, here, elsewhere in rows:
        if here:
            found.append(f"role {role}: {here} object(s) or grant(s) still in this database")
        if not elsewhere:
            found.append(f"role {role}: kept although no other database uses it")
    return found
