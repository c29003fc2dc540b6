-- Structure: the roles, the schema `keen`, who owns what, and the tables and views it holds.
BEGIN;
SELECT plan(32);

-- ===== roles =================================================================
SELECT has_role('keen_owner', 'the role keen_owner exists');
SELECT has_role('keen_app', 'the role keen_app exists');
SELECT has_role('keen_analytics', 'the role keen_analytics exists');
SELECT results_eq(
  $$SELECT rolname::text COLLATE "default", rolcanlogin, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolreplication
      FROM pg_catalog.pg_roles WHERE rolname IN ('keen_owner', 'keen_app', 'keen_analytics') ORDER BY rolname$$,
  $$VALUES ('keen_analytics', false, false, false, false, false, false),
           ('keen_app', false, false, false, false, false, false),
           ('keen_owner', false, false, false, false, false, false)$$,
  'the roles are NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION: services log in as members');
SELECT isnt_superuser('keen_app', 'keen_app is not a superuser');
SELECT is(
  (SELECT count(*) FROM pg_catalog.pg_auth_members AS m
    WHERE m.member IN ('keen_app'::regrole, 'keen_analytics'::regrole, 'keen_owner'::regrole)
      AND m.roleid IN ('keen_app'::regrole, 'keen_analytics'::regrole, 'keen_owner'::regrole)),
  0::bigint,
  'no role of ours is a member of another: keen_app cannot act as keen_owner');

-- ===== the schema ============================================================
SELECT has_schema('keen', 'the schema keen exists');
SELECT schema_owner_is('keen', 'keen_owner', 'keen_owner owns the schema keen');
SELECT schema_privs_are('keen', 'keen_app', ARRAY['USAGE'], 'keen_app may use keen but not create in it');
SELECT schema_privs_are('keen', 'keen_analytics', ARRAY['USAGE'], 'keen_analytics may use keen but not create in it');
SELECT schema_privs_are('keen', 'public', ARRAY[]::text[], 'PUBLIC has no access to keen');
SELECT is(
  (SELECT count(*) FROM pg_catalog.pg_namespace AS n
    WHERE n.nspowner = 'keen_owner'::regrole AND n.nspname <> 'keen'),
  0::bigint,
  'keen_owner owns no other schema: every object lives in keen');

-- ===== what the schema holds =================================================
SELECT tables_are('keen', ARRAY[
  'users', 'auth_tokens', 'agent_sessions', 'session_events', 'websocket_connections',
  'credit_accounts', 'credit_transactions', 'credit_holds', 'recharge_requests', 'daily_usage_stats',
  'user_audit_log', 'session_limits', 'tenant_lookup', 'session_usage_queue'],
  'keen holds the original six tables, the contract''s five more, the session_limits setting, the cross-tenant tenant_lookup and the usage queue');
SELECT materialized_views_are('keen', ARRAY['dashboard_metrics'], 'keen holds one materialized view, dashboard_metrics');
SELECT views_are('keen', ARRAY[]::name[], 'keen holds no plain views');
SELECT sequences_are('keen', ARRAY['agent_sessions_start_seq_seq', 'user_audit_log_id_seq'],
  'the only sequences are the identities of agent_sessions.start_seq and user_audit_log (event ids take none)');
SELECT is(
  (SELECT count(*) FROM pg_catalog.pg_class AS c
    WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'p', 'm', 'v', 'S', 'i')
      AND c.relowner <> 'keen_owner'::regrole),
  0::bigint,
  'keen_owner owns every table, view, sequence and index in keen');
SELECT is(
  (SELECT count(*) FROM pg_catalog.pg_proc AS p
    WHERE p.pronamespace = 'keen'::regnamespace AND p.proowner <> 'keen_owner'::regrole),
  0::bigint,
  'keen_owner owns every function in keen');
SELECT is(
  (SELECT count(*) FROM pg_catalog.pg_type AS t
    WHERE t.typnamespace = 'keen'::regnamespace AND t.typowner <> 'keen_owner'::regrole),
  0::bigint,
  'keen_owner owns every type in keen');
SELECT is(
  ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class AS c
         WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind = 'r'
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity) ORDER BY 1),
  ARRAY[]::text[],
  'every table has row-level security enabled and forced (policies: 11_isolation.sql)');
SELECT is(
  ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class AS c
         WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind = 'r'
           AND c.relname NOT IN ('session_limits', 'session_usage_queue')
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                            WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
                              AND a.atttypid = 'uuid'::regtype AND a.attnotnull) ORDER BY 1),
  ARRAY[]::text[],
  'every table but the session_limits setting and the usage queue (coordinator-only, emptied at commit) holds tenant rows keyed by a NOT NULL uuid user_id');
SELECT is(
  ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class AS c
         WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind = 'r'
           AND pg_catalog.obj_description(c.oid, 'pg_class') IS NULL ORDER BY 1),
  ARRAY[]::text[],
  'every table carries a COMMENT');
SELECT is(
  ARRAY(SELECT c.relname::text || '.' || a.attname FROM pg_catalog.pg_class AS c
          JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind = 'r'
           AND (a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype, 'timestamp'::regtype,
                               'float4'::regtype, 'float8'::regtype, 'money'::regtype, 'json'::regtype))
         ORDER BY 1),
  ARRAY[]::text[],
  'no table column is varchar, char, timestamp without time zone, float, money or json');
SELECT is(
  ARRAY(SELECT con.conname::text FROM pg_catalog.pg_constraint AS con
         WHERE con.connamespace = 'keen'::regnamespace AND con.contype = 'f'
           AND con.confrelid <> 'keen.users'::regclass
           AND NOT (con.conkey[1] = (SELECT a.attnum FROM pg_catalog.pg_attribute AS a
                                      WHERE a.attrelid = con.conrelid AND a.attname = 'user_id')
                    AND con.confkey[1] = (SELECT a.attnum FROM pg_catalog.pg_attribute AS a
                                           WHERE a.attrelid = con.confrelid AND a.attname = 'user_id'))
         ORDER BY 1),
  ARRAY[]::text[],
  'every foreign key between tenant tables leads with user_id on both sides: no cross-tenant reference');
SELECT is(
  ARRAY(SELECT con.conname::text FROM pg_catalog.pg_constraint AS con
         WHERE con.connamespace = 'keen'::regnamespace AND con.contype = 'f'
           AND con.confrelid = 'keen.users'::regclass
           AND (con.conkey <> ARRAY[(SELECT a.attnum FROM pg_catalog.pg_attribute AS a
                                      WHERE a.attrelid = con.conrelid AND a.attname = 'user_id')]
                OR con.confkey <> ARRAY[(SELECT a.attnum FROM pg_catalog.pg_attribute AS a
                                          WHERE a.attrelid = 'keen.users'::regclass AND a.attname = 'id')])
         ORDER BY 1),
  ARRAY[]::text[],
  'a table references users only by its own user_id');
SELECT is(
  ARRAY(SELECT con.conname::text FROM pg_catalog.pg_constraint AS con
         WHERE con.connamespace = 'keen'::regnamespace AND con.contype = 'f' AND con.confdeltype = 'a'
         ORDER BY 1),
  ARRAY[]::text[],
  'every foreign key states its ON DELETE action (none is left at the default NO ACTION)');

-- ===== names are API (STYLE 3) ===============================================
SELECT is(
  ARRAY(SELECT c.relname || '.' || con.conname FROM pg_catalog.pg_constraint AS con
          JOIN pg_catalog.pg_class AS c ON c.oid = con.conrelid
         WHERE con.connamespace = 'keen'::regnamespace AND con.contype IN ('p', 'u', 'f', 'c', 'x')
           AND NOT (con.conname LIKE c.relname || '\_%'
                    AND con.conname ~ '_(pkey|key|fkey|check|excl)$')
         ORDER BY 1),
  ARRAY[]::text[],
  'every constraint is named <table>_…_pkey, _key, _fkey or _check');
SELECT is(
  ARRAY(SELECT c.relname::text FROM pg_catalog.pg_index AS i
          JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
          JOIN pg_catalog.pg_class AS t ON t.oid = i.indrelid
         WHERE c.relnamespace = 'keen'::regnamespace
           AND NOT (c.relname LIKE t.relname || '\_%'
                    AND c.relname ~ CASE WHEN i.indisunique THEN '_(pkey|key)$' ELSE '_idx$' END)
         ORDER BY 1),
  ARRAY[]::text[],
  'every index is named <table>_…_key when unique, <table>_…_idx otherwise');
SELECT is(
  ARRAY(SELECT c.relname || '.' || t.tgname FROM pg_catalog.pg_trigger AS t
          JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND c.relnamespace = 'keen'::regnamespace
           AND t.tgname !~ '^_[0-9]{3}_[a-z_]+$'
         ORDER BY 1),
  ARRAY[]::text[],
  'every trigger is named _NNN_<task> (same-event triggers fire in name order)');
SELECT is(
  ARRAY(SELECT p.proname::text FROM pg_catalog.pg_proc AS p
         WHERE p.pronamespace = 'keen'::regnamespace AND p.prorettype = 'trigger'::regtype
           AND p.proname !~ '^tg_'
         ORDER BY 1),
  ARRAY[]::text[],
  'every trigger function is named tg_…');

-- ===== default privileges ====================================================
SELECT is(
  (SELECT pg_catalog.array_to_string(d.defaclacl, ',') FROM pg_catalog.pg_default_acl AS d
    WHERE d.defaclrole = 'keen_owner'::regrole AND d.defaclnamespace = 0 AND d.defaclobjtype = 'f'),
  'keen_owner=X/keen_owner',
  'functions keen_owner creates are not executable by PUBLIC (a database-wide default: a per-schema REVOKE does nothing)');
SELECT is(
  ARRAY(SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc AS p
         WHERE p.pronamespace = 'keen'::regnamespace
           AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY 1),
  ARRAY[]::text[],
  'no function in keen is executable by PUBLIC');

SELECT * FROM finish();
ROLLBACK;
