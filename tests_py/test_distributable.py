"""The schema is distributable by tenant on Citus (DESIGN.md, "Scale beyond one server").

The catalog of a migrated database is checked rule by rule with tests_py/support/
distributable.py: keys lead with the tenant key, foreign keys between tenant tables carry it,
policies call keen.current_user_id() directly, trigger functions of tenant tables touch no
table, and every statement of every keen function names one tenant by value. The checker's
own tests show that each rule can fail, on sample SQL and on a function created in a
rolled-back transaction.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests_py.support import distributable as dist

TENANTS = ["users", "auth_tokens", "agent_sessions", "credit_accounts", "credit_holds"]


@pytest.fixture(scope="module")
def violations(db_url: str) -> list[dist.Violation]:
    with psycopg.connect(db_url) as conn:
        return dist.catalog_violations(conn)


@pytest.fixture
def scratch(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection to the module's database inside a transaction that is rolled back."""
    with psycopg.connect(db_url) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def _listed(found: list[dist.Violation], rule: str) -> list[str]:
    return [str(v) for v in found if v.rule == rule]


# ===== the schema =============================================================


@pytest.mark.parametrize(
    ("rule", "what"),
    [
        ("keys", "every primary and unique key of a tenant table leads with user_id (users: id)"),
        ("foreign-keys", "foreign keys between tenant tables pair user_id with users (id)"),
        ("policies", "policies call keen.current_user_id() directly, with no sub-SELECT"),
        ("triggers", "trigger functions of tenant tables touch no table"),
        ("statements", "every statement on a tenant table names user_id by value"),
    ],
)
def test_schema_is_distributable_by_tenant(
    violations: list[dist.Violation], rule: str, what: str
) -> None:
    found = _listed(violations, rule)
    assert not found, f"{what}; {len(found)} violation(s):\n" + "\n".join(found)


def test_the_checker_sees_the_tenant_tables(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        tenants = dist.tenant_tables(conn)
        functions = dist.keen_functions(conn)
    assert {"users", "agent_sessions", "credit_accounts", "credit_transactions"} <= set(tenants)
    assert not set(tenants) & dist.EXCEPTED
    # The checker reads real bodies: most statements of the schema name a tenant table.
    named = sum(
        1
        for _, _, language, source in functions
        for table in dist.tables_touched(source, language)
        if table in tenants
    )
    assert named > 50


# ===== the checker on sample SQL ==============================================


def _problems(body: str, language: str = "plpgsql") -> list[str]:
    return [problem for _, problem in dist.check_source(body, TENANTS, language)]


@pytest.mark.parametrize(
    "body",
    [
        "BEGIN SELECT s.* INTO v FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id; END",
        "BEGIN UPDATE keen.credit_accounts AS a SET x = 1"
        " WHERE a.user_id = p_user_id AND a.id = p_id; END",
        "BEGIN DELETE FROM keen.auth_tokens AS t WHERE t.user_id = $1; END",
        "BEGIN SELECT u.id FROM keen.users AS u WHERE u.id = v_token.user_id; END",
        # A join on user_id with a pinned table, and a correlated subquery.
        "BEGIN SELECT h.id FROM keen.credit_accounts AS a JOIN keen.credit_holds AS h"
        " ON h.user_id = a.user_id WHERE a.user_id = v_user_id; END",
        "BEGIN IF EXISTS (SELECT FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id"
        " AND NOT EXISTS (SELECT FROM keen.credit_holds AS h WHERE h.user_id = s.user_id)) THEN"
        " RETURN; END IF; END",
        "BEGIN INSERT INTO keen.credit_holds (user_id, amount) VALUES (v_user_id, 1); END",
        "BEGIN INSERT INTO keen.credit_holds (amount, user_id)"
        " SELECT a.balance, a.user_id FROM keen.credit_accounts AS a"
        " WHERE a.user_id = p_user_id; END",
        # Quotes, dollar quotes and comments hide what looks like SQL.
        "BEGIN RAISE NOTICE 'FROM keen.agent_sessions AS s'; -- FROM keen.users\n"
        " PERFORM $x$ DELETE FROM keen.auth_tokens $x$; END",
        # A variable of a tenant table's row type is no statement on it.
        "DECLARE v_s keen.agent_sessions; BEGIN v_s.id := NULL; END",
        "BEGIN SELECT h.id FROM keen.credit_accounts AS a JOIN keen.credit_holds AS h"
        " USING (user_id) WHERE a.user_id = v_user_id; END",
        # A row comparison is a conjunction.
        "BEGIN DELETE FROM keen.auth_tokens AS t WHERE (t.user_id, t.id) = (v_user_id, p_id); END",
        # A marked all-tenant read that neither writes nor locks, the mark above the
        # statement or above its query.
        "BEGIN\n  FOR v_user_id IN\n    -- all tenants: the job works per tenant\n"
        "    SELECT DISTINCT h.user_id FROM keen.credit_holds AS h\n  LOOP\n  END LOOP;\nEND",
        "BEGIN\n  -- all tenants: the operator job lists the tenants, then works per tenant\n"
        "  FOR v_user_id IN SELECT DISTINCT h.user_id FROM keen.credit_holds AS h LOOP\n"
        "    PERFORM keen.expire_lapsed_holds(v_user_id);\n  END LOOP;\nEND",
    ],
)
def test_single_tenant_statements_pass(body: str) -> None:
    assert _problems(body) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "BEGIN SELECT t.* INTO v FROM keen.auth_tokens AS t WHERE t.token_hash = p_hash; END",
            "no user_id = <variable> predicate",
        ),
        (
            # The predicate names another table only.
            "BEGIN SELECT h.id FROM keen.credit_accounts AS a, keen.credit_holds AS h"
            " WHERE a.user_id = v_user_id AND h.id = a.hold_id; END",
            "read of keen.credit_holds AS h: no user_id",
        ),
        (
            "BEGIN UPDATE keen.agent_sessions AS s SET x = 1 WHERE s.user_id = ANY (v_users); END",
            "user_id = ANY (...) is not one tenant",
        ),
        (
            # A join on user_id, but neither side is pinned.
            "BEGIN SELECT h.id FROM keen.credit_accounts AS a JOIN keen.credit_holds AS h"
            " ON h.user_id = a.user_id WHERE a.id = p_id; END",
            "joined on user_id only with a table that is not pinned",
        ),
        (
            "BEGIN SELECT 1 FROM keen.credit_accounts AS a JOIN keen.credit_holds AS h"
            " ON h.account_id = a.id WHERE a.user_id = v_user_id; END",
            "read of keen.credit_holds AS h: no user_id",
        ),
        (
            "BEGIN INSERT INTO keen.credit_holds (account_id, amount) VALUES (v_account, 1); END",
            "user_id not given",
        ),
        (
            "BEGIN INSERT INTO keen.credit_holds (user_id, amount) VALUES (keen.pick(), 1); END",
            "user_id is not given a variable or parameter",
        ),
        (
            # A disjunct pins nothing.
            "BEGIN DELETE FROM keen.auth_tokens AS t"
            " WHERE t.user_id = v_user_id OR t.id = p_id; END",
            "no user_id = <variable> predicate",
        ),
        (
            "BEGIN SELECT s.* FROM keen.agent_sessions AS s"
            " WHERE s.user_id = (SELECT keen.require_user_id()); END",
            "compared with an expression",
        ),
        (
            # users is distributed by its id.
            "BEGIN UPDATE keen.users AS u SET x = 1 WHERE u.user_id = v_user_id; END",
            "users is distributed by id",
        ),
        (
            # Unmarked fan-out.
            "BEGIN FOR v_user_id IN SELECT DISTINCT h.user_id FROM keen.credit_holds AS h"
            " LOOP PERFORM keen.expire_lapsed_holds(v_user_id); END LOOP; END",
            "no user_id = <variable> predicate",
        ),
        (
            # A mark further up does not cover a later statement.
            "BEGIN\n  -- all tenants: listing\n  PERFORM 1;\n"
            "  SELECT h.id FROM keen.credit_holds AS h;\nEND",
            "no user_id = <variable> predicate",
        ),
        (
            "BEGIN\n  -- all tenants: claims the jobs of every tenant\n"
            "  SELECT h.id FROM keen.credit_holds AS h FOR UPDATE SKIP LOCKED;\nEND",
            "marked `all tenants` but locks rows (FOR UPDATE)",
        ),
        (
            "BEGIN\n  -- all tenants: expires every tenant's holds\n"
            "  UPDATE keen.credit_holds AS h SET status = 'expired'"
            " WHERE h.expires_at < now();\nEND",
            "marked `all tenants` but writes keen.credit_holds",
        ),
        (
            "BEGIN LOCK TABLE keen.credit_holds IN SHARE MODE; END",
            "lock of keen.credit_holds AS credit_holds: a table-wide statement takes every shard",
        ),
        (
            "SELECT s.id FROM keen.agent_sessions AS s WHERE s.id = p_id",
            "no user_id = <variable> predicate",
        ),
    ],
)
def test_statements_that_fan_out_are_reported(body: str, expected: str) -> None:
    language = "sql" if not body.startswith("BEGIN") else "plpgsql"
    problems = _problems(body, language)
    assert any(expected in p for p in problems), problems


def test_statements_split_at_block_keywords_not_inside_case_or_quotes() -> None:
    body = """
DECLARE
  v_x text := CASE WHEN p_a THEN 'x; END' ELSE $q$;$q$ END;
BEGIN
  IF EXISTS (SELECT FROM keen.users AS u WHERE u.id = v_id) THEN
    UPDATE keen.auth_tokens AS t SET n = CASE WHEN t.n > 0 THEN 1 ELSE 2 END WHERE t.user_id = v_id;
  ELSE
    /* a comment; with a semicolon */ RETURN;
  END IF;
END
"""
    starts = [s.tokens[0].text for s in dist.split_statements(body)]
    assert starts == ["v_x", "IF", "UPDATE", "RETURN", "IF"]
    assert _problems(body) == []


# ===== the checker on the catalog =============================================


def test_a_function_that_fans_out_is_reported(
    scratch: psycopg.Connection[tuple[object, ...]],
) -> None:
    scratch.execute(
        """
        CREATE FUNCTION keen.zz_fan_out(p_hash text) RETURNS uuid
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
          v_user_id uuid := keen.require_user_id();
          v_id uuid;
        BEGIN
          SELECT t.id INTO v_id FROM keen.auth_tokens AS t WHERE t.user_id = v_user_id;
          SELECT t.id INTO v_id FROM keen.auth_tokens AS t WHERE t.token_hash = p_hash;
          RETURN v_id;
        END
        $$
        """
    )
    tenants = dist.tenant_tables(scratch)
    found = [
        v
        for v in dist.statement_violations(dist.keen_functions(scratch), tenants)
        if v.where.startswith("keen.zz_fan_out(")
    ]
    assert [(v.where, v.what) for v in found] == [
        (
            "keen.zz_fan_out(text) line 7",  # as PL/pgSQL counts: from the $$
            "read of keen.auth_tokens AS t: no user_id = <variable> predicate",
        )
    ]
    assert "t.token_hash = p_hash" in found[0].excerpt


def test_a_key_a_foreign_key_a_policy_and_a_trigger_are_reported(
    scratch: psycopg.Connection[tuple[object, ...]],
) -> None:
    scratch.execute(
        """
        CREATE TABLE keen.zz_notes (
          id uuid NOT NULL, user_id uuid NOT NULL, note text, last_reply_id uuid,
          CONSTRAINT zz_notes_pkey PRIMARY KEY (id),
          CONSTRAINT zz_notes_user_id_id_key UNIQUE (user_id, id),
          CONSTRAINT zz_notes_user_id_fkey FOREIGN KEY (user_id) REFERENCES keen.users (id)
        );
        CREATE TABLE keen.zz_replies (
          user_id uuid NOT NULL, id uuid NOT NULL, note_id uuid,
          CONSTRAINT zz_replies_pkey PRIMARY KEY (user_id, id),
          CONSTRAINT zz_replies_note_id_fkey FOREIGN KEY (note_id) REFERENCES keen.zz_notes (id),
          CONSTRAINT zz_replies_note_fkey FOREIGN KEY (user_id, note_id)
            REFERENCES keen.zz_notes (user_id, id)
        );
        ALTER TABLE keen.zz_notes ADD CONSTRAINT zz_notes_last_reply_fkey
          FOREIGN KEY (user_id, last_reply_id) REFERENCES keen.zz_replies (user_id, id)
          ON DELETE SET NULL (last_reply_id);
        ALTER TABLE keen.zz_replies ENABLE ROW LEVEL SECURITY;
        CREATE POLICY select_own ON keen.zz_replies FOR SELECT
          USING (user_id = (SELECT keen.current_user_id()));
        CREATE FUNCTION keen.tg_zz_replies__count() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
          UPDATE keen.zz_notes AS n SET note = n.note WHERE n.user_id = NEW.user_id;
          RETURN NEW;
        END
        $$;
        CREATE TRIGGER _500_count AFTER INSERT ON keen.zz_replies
          FOR EACH ROW EXECUTE FUNCTION keen.tg_zz_replies__count();
        """
    )
    found = [str(v) for v in dist.catalog_violations(scratch) if "zz_" in str(v)]
    expected = [
        "[keys] keen.zz_notes: primary key zz_notes_pkey does not lead with user_id",
        "[foreign-keys] keen.zz_replies.zz_replies_note_id_fkey: does not pair user_id",
        "[foreign-keys] keen.zz_notes.zz_notes_last_reply_fkey: ON DELETE with a column list",
        "[foreign-keys] keen.zz_notes -> keen.zz_replies -> keen.zz_notes: a cycle of foreign keys",
        "[policies] keen.zz_replies policy select_own: USING has a sub-SELECT",
        "[triggers] keen.tg_zz_replies__count() on keen.zz_replies: touches keen.zz_notes",
    ]
    for text in expected:
        assert any(f.startswith(text) for f in found), (text, found)
    # Foreign keys that carry the tenant, and a key leading with it, are not reported.
    for name in ("zz_notes_user_id_fkey", "zz_replies_note_fkey:", "zz_notes_user_id_id_key"):
        assert not any(name in f for f in found), (name, found)


def test_dynamic_sql_on_a_tenant_table_is_reported() -> None:
    body = "BEGIN EXECUTE 'DELETE FROM keen.auth_tokens WHERE user_id = $1' USING v_user_id; END"
    assert _problems(body) == [
        "dynamic SQL (EXECUTE) on keen.auth_tokens: write it as a static statement"
    ]


def test_a_sql_standard_body_is_read(scratch: psycopg.Connection[tuple[object, ...]]) -> None:
    scratch.execute(
        """
        CREATE FUNCTION keen.zz_atomic(p_user_id uuid, p_id uuid) RETURNS bigint
        LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
        BEGIN ATOMIC
          SELECT pg_catalog.count(*) FROM keen.agent_sessions AS s WHERE s.user_id = p_user_id;
          SELECT pg_catalog.count(*) FROM keen.agent_sessions AS s WHERE s.id = p_id;
        END
        """
    )
    found = [
        v.what
        for v in dist.statement_violations(
            dist.keen_functions(scratch), dist.tenant_tables(scratch)
        )
        if v.where.startswith("keen.zz_atomic(")
    ]
    assert found == ["read of keen.agent_sessions AS s: no user_id = <variable> predicate"]
