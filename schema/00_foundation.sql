-- keen foundation: roles, the schema `keen`, tenant context and shared helpers.
-- Runs as a superuser (roles are cluster-wide); everything after it runs as keen_owner.

-- ===== roles =================================================================
-- Created only when missing: a second database on the same cluster migrates cleanly.
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'keen_owner') THEN
    CREATE ROLE keen_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'keen_app') THEN
    CREATE ROLE keen_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'keen_analytics') THEN
    CREATE ROLE keen_analytics NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
  END IF;
END
$roles$;

-- ===== schema ================================================================
CREATE SCHEMA keen AUTHORIZATION keen_owner;
REVOKE ALL ON SCHEMA keen FROM PUBLIC;
GRANT USAGE ON SCHEMA keen TO keen_app, keen_analytics;
-- No service login creates temporary objects (each is a PUBLIC member): a temporary type,
-- table or function could otherwise outlive its transaction on a pooled connection. Only
-- keen_owner may (REFRESH MATERIALIZED VIEW CONCURRENTLY builds its diff in a temp table).
DO $temp$
BEGIN
  EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', pg_catalog.current_database());
  EXECUTE pg_catalog.format('GRANT TEMPORARY ON DATABASE %I TO keen_owner', pg_catalog.current_database());
END
$temp$;
-- keen_owner sees and ends other logins' idle transactions (keen.end_idle_transactions):
-- never a superuser's, which PostgreSQL refuses to pg_signal_backend.
GRANT pg_read_all_stats, pg_signal_backend TO keen_owner;

SET ROLE keen_owner;

-- Functions are executable by PUBLIC unless revoked: nothing keen_owner creates is, by
-- default. Not `IN SCHEMA keen`: per-schema default privileges can only add to the global
-- ones, so a per-schema REVOKE of PUBLIC's EXECUTE silently does nothing.
ALTER DEFAULT PRIVILEGES FOR ROLE keen_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- ===== functions =============================================================
CREATE FUNCTION keen.current_user_id()
RETURNS uuid
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_setting text;
BEGIN
  -- After a transaction-local setting ends, the setting reads '' rather than NULL:
  -- both mean "no tenant".
  -- PL/pgSQL, not SQL: a SQL function with SET search_path is never inlined and is parsed
  -- and planned again on every call, i.e. on every statement under RLS (~10 µs each);
  -- PL/pgSQL keeps its plan for the session (bench/isolation, bench/credits).
  -- Fail closed: anything but a canonical uuid (malformed, padded, braced) is no tenant,
  -- never a raw 22P02 (a regular expression is cheaper than an exception block).
  v_setting := pg_catalog.current_setting('app.current_user_id', true);
  IF v_setting ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
    RETURN v_setting::uuid;
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION keen.require_user_id()
RETURNS uuid
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.current_user_id();
BEGIN
  IF v_user_id IS NULL THEN
    RAISE EXCEPTION 'no tenant context: app.current_user_id is not set in this transaction'
      USING ERRCODE = 'KE010',
            HINT = 'Run tenant calls inside keen_sql Database.tenant(user_id).';
  END IF;
  RETURN v_user_id;
END
$$;

CREATE FUNCTION keen.tg_set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  NEW.updated_at := pg_catalog.now();
  RETURN NEW;
END
$$;

CREATE FUNCTION keen.text_prefix(p_value text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Error messages quote at most 24 characters of a caller's value (no megabytes in the log).
  IF p_value IS NULL THEN
    RETURN 'NULL';
  ELSIF pg_catalog.length(p_value) <= 24 THEN
    RETURN pg_catalog.quote_literal(p_value);
  END IF;
  RETURN pg_catalog.quote_literal(pg_catalog.left(p_value, 24)) || '...';
END
$$;

CREATE FUNCTION keen.check_text(p_value text, p_what text, p_max integer, p_required boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Every free-text argument is bounded (1 to p_max characters; NULL only when optional).
  IF p_value IS NULL THEN
    IF p_required THEN
      RAISE EXCEPTION 'invalid argument: % is required', p_what USING ERRCODE = 'KE013';
    END IF;
  ELSIF pg_catalog.length(p_value) NOT BETWEEN 1 AND p_max THEN
    RAISE EXCEPTION 'invalid argument: % % has % characters (1 to % allowed)', p_what,
        keen.text_prefix(p_value), pg_catalog.length(p_value), p_max
      USING ERRCODE = 'KE013';
  END IF;
END
$$;

CREATE FUNCTION keen.check_text_array(p_values text[], p_what text, p_max_items integer, p_max integer)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_value text;
BEGIN
  -- At most p_max_items elements, each 1 to p_max characters and not NULL.
  IF p_values IS NULL THEN
    RETURN;
  END IF;
  IF pg_catalog.cardinality(p_values) > p_max_items THEN
    RAISE EXCEPTION 'invalid argument: % has % elements (at most % allowed)', p_what,
        pg_catalog.cardinality(p_values), p_max_items
      USING ERRCODE = 'KE013';
  END IF;
  FOREACH v_value IN ARRAY p_values LOOP
    PERFORM keen.check_text(v_value, p_what || ' element', p_max, true);
  END LOOP;
END
$$;

CREATE FUNCTION keen.check_jsonb(p_value jsonb, p_what text, p_max_bytes integer)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_value IS NOT NULL AND pg_catalog.pg_column_size(p_value) > p_max_bytes THEN
    RAISE EXCEPTION 'invalid argument: % takes % bytes (at most % allowed)', p_what,
        pg_catalog.pg_column_size(p_value), p_max_bytes
      USING ERRCODE = 'KE013';
  END IF;
END
$$;

CREATE FUNCTION keen.end_idle_transactions(p_idle interval DEFAULT '1 minute')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_pid integer;
  v_ended integer := 0;
BEGIN
  IF p_idle IS NULL OR p_idle <= interval '0' THEN
    RAISE EXCEPTION 'invalid argument: idle time % is not a positive interval', p_idle
      USING ERRCODE = 'KE013';
  END IF;
  -- Service logins only (members of keen_app that are not superusers), in this database,
  -- idle inside a transaction since before the bound.
  FOR v_pid IN
    SELECT a.pid
      FROM pg_catalog.pg_stat_activity AS a
      JOIN pg_catalog.pg_roles AS r ON r.oid = a.usesysid
     WHERE a.datname = pg_catalog.current_database()
       AND a.pid <> pg_catalog.pg_backend_pid()
       AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
       AND a.state_change < pg_catalog.now() - p_idle
       AND NOT r.rolsuper
       AND pg_catalog.pg_has_role(r.oid, 'keen_app', 'MEMBER')
     ORDER BY a.pid
  LOOP
    IF pg_catalog.pg_terminate_backend(v_pid) THEN
      v_ended := v_ended + 1;
    END IF;
  END LOOP;
  RETURN v_ended;
END
$$;

-- ===== grants ================================================================
GRANT EXECUTE ON FUNCTION keen.current_user_id(), keen.require_user_id() TO keen_app;
-- keen.get_session (which keen_app calls) bounds its argument with these.
GRANT EXECUTE ON FUNCTION keen.text_prefix(text), keen.check_text(text, text, integer, boolean) TO keen_app;

-- ===== comments ==============================================================
COMMENT ON SCHEMA keen IS 'keen-sql: every table, view and function of the keen database layer.';
COMMENT ON FUNCTION keen.current_user_id() IS
  'The tenant of the current transaction (app.current_user_id), or NULL when unset, empty or not a canonical uuid.';
COMMENT ON FUNCTION keen.require_user_id() IS
  'The tenant of the current transaction; raises KE010 when there is none.';
COMMENT ON FUNCTION keen.tg_set_updated_at() IS 'Trigger: stamps updated_at on every UPDATE.';
COMMENT ON FUNCTION keen.text_prefix(text) IS
  'A caller''s text as quoted in an error message: at most its first 24 characters.';
COMMENT ON FUNCTION keen.check_text(text, text, integer, boolean) IS
  'Raises KE013 when the text is longer than p_max characters or empty (or NULL when required).';
COMMENT ON FUNCTION keen.check_text_array(text[], text, integer, integer) IS
  'Raises KE013 when the array has more than p_max_items elements or an element fails keen.check_text.';
COMMENT ON FUNCTION keen.check_jsonb(jsonb, text, integer) IS
  'Raises KE013 when the JSON value takes more than p_max_bytes bytes.';

COMMENT ON FUNCTION keen.end_idle_transactions(interval) IS
  'Housekeeping, all service logins (SECURITY DEFINER, operators only): ends the backends of keen_app members idle in a transaction for longer than p_idle; returns how many.';
RESET ROLE;
