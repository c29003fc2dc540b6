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
SET search_path = ''
AS $$
BEGIN
  -- After a transaction-local setting ends, the setting reads '' rather than NULL:
  -- both mean "no tenant".
  -- PL/pgSQL, not SQL: a SQL function with SET search_path is never inlined and is parsed
  -- and planned again on every call, i.e. on every statement under RLS (~10 µs each);
  -- PL/pgSQL keeps its plan for the session (bench/isolation, bench/credits).
  RETURN nullif(pg_catalog.current_setting('app.current_user_id', true), '')::uuid;
END
$$;

CREATE FUNCTION keen.require_user_id()
RETURNS uuid
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = ''
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
SET search_path = ''
AS $$
BEGIN
  NEW.updated_at := pg_catalog.now();
  RETURN NEW;
END
$$;

-- ===== grants ================================================================
GRANT EXECUTE ON FUNCTION keen.current_user_id(), keen.require_user_id() TO keen_app;

-- ===== comments ==============================================================
COMMENT ON SCHEMA keen IS 'keen-sql: every table, view and function of the keen database layer.';
COMMENT ON FUNCTION keen.current_user_id() IS
  'The tenant of the current transaction (app.current_user_id), or NULL when unset or empty.';
COMMENT ON FUNCTION keen.require_user_id() IS
  'The tenant of the current transaction; raises KE010 when there is none.';
COMMENT ON FUNCTION keen.tg_set_updated_at() IS 'Trigger: stamps updated_at on every UPDATE.';

RESET ROLE;
