-- Tenant isolation across the whole schema: RLS on every tenant table for every command,
-- cross-tenant references, fail-closed without context, and the exact lists of SECURITY
-- DEFINER functions, policies and grants (a new one cannot appear unnoticed).
BEGIN;
SELECT plan(158);

-- pgTAP itself must be callable while acting as keen_app (rolled back with the test).
GRANT USAGE ON SCHEMA tap TO keen_app, keen_analytics;

-- ===== helpers (schema tap: rolled back with the test; keen_app has no pg_temp) =====
-- Runs one statement in a subtransaction that is always undone; reports 'rows N' or the
-- error as 'SQLSTATE message'.
CREATE FUNCTION tap.attempt(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v_rows bigint;
  v_result text;
BEGIN
  BEGIN
    EXECUTE p_sql;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_result := 'rows ' || v_rows;
    RAISE EXCEPTION 'undo' USING ERRCODE = 'ZZ001';
  EXCEPTION
    WHEN SQLSTATE 'ZZ001' THEN NULL;
    WHEN OTHERS THEN v_result := SQLSTATE || ' ' || SQLERRM;
  END;
  RETURN v_result;
END
$$;

-- Every tenant table's behaviour for every command, acting as keen_app for p_own.
CREATE FUNCTION tap.rls_matrix(p_table regclass, p_own uuid, p_other uuid)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  t text := p_table::text;
  v_col text;
  v_cols text;
  v_row jsonb;
  v_own bigint;
  v_all bigint;
  v_other bigint;
  v_res text;
  v_can_update boolean := has_any_column_privilege('keen_app', p_table, 'UPDATE');
  v_can_insert boolean := has_any_column_privilege('keen_app', p_table, 'INSERT');
  v_can_delete boolean := has_table_privilege('keen_app', p_table, 'DELETE');
BEGIN
  EXECUTE format('SELECT count(user_id) FROM %s WHERE user_id = $1', t) INTO v_own USING p_own;
  RETURN NEXT ok(v_own >= 1, t || ': a tenant sees its own rows');

  EXECUTE format('SELECT count(user_id) FROM %s', t) INTO v_all;
  EXECUTE format('SELECT count(user_id) FROM %s WHERE user_id = $1', t) INTO v_other USING p_other;
  RETURN NEXT ok(v_other = 0 AND v_all = v_own, t || ': another tenant''s rows are invisible');

  -- A no-op UPDATE on a column keen_app may update (user_id where it may).
  SELECT a.attname INTO v_col
  FROM pg_attribute AS a
  WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    AND has_column_privilege('keen_app', p_table, a.attnum, 'UPDATE')
  ORDER BY a.attname <> 'user_id', a.attnum
  LIMIT 1;
  IF v_can_update THEN
    v_res := tap.attempt(format('UPDATE %s SET %I = %I WHERE user_id = %L', t, v_col, v_col, p_own));
    RETURN NEXT ok(v_res ~ '^rows [1-9]', t || ': a tenant can update its own rows (' || v_res || ')');
    v_res := tap.attempt(format('UPDATE %s SET %I = %I WHERE user_id = %L', t, v_col, v_col, p_other));
    RETURN NEXT is(v_res, 'rows 0', t || ': UPDATE of another tenant''s rows affects 0 rows');
  ELSE
    -- Any stored column (users.user_id is generated: updating it fails before any privilege check).
    SELECT a.attname INTO v_col
    FROM pg_attribute AS a
    WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    ORDER BY a.attname <> 'user_id', a.attnum
    LIMIT 1;
    v_res := tap.attempt(format('UPDATE %s SET %I = %I WHERE user_id = %L', t, v_col, v_col, p_own));
    RETURN NEXT ok(v_res ~ '^42501 permission denied', t || ': UPDATE is not granted to keen_app (' || v_res || ')');
    v_res := tap.attempt(format('UPDATE %s SET %I = %I WHERE user_id = %L', t, v_col, v_col, p_other));
    RETURN NEXT ok(v_res ~ '^42501 permission denied', t || ': UPDATE of another tenant''s rows is refused outright');
  END IF;

  v_res := tap.attempt(format('DELETE FROM %s WHERE user_id = %L', t, p_other));
  IF v_can_delete THEN
    RETURN NEXT is(v_res, 'rows 0', t || ': DELETE of another tenant''s rows affects 0 rows');
  ELSE
    RETURN NEXT ok(v_res ~ '^42501 permission denied', t || ': DELETE of another tenant''s rows is refused (not granted)');
  END IF;
  v_res := tap.attempt(format('DELETE FROM %s WHERE user_id = %L', t, p_own));
  RETURN NEXT ok(CASE WHEN v_can_delete THEN v_res ~ '^rows [1-9]' ELSE v_res ~ '^42501 permission denied' END,
                 t || ': DELETE of own rows ' || CASE WHEN v_can_delete THEN 'works' ELSE 'is not granted' END);

  IF v_can_insert THEN
    -- Copy an own row, give it a new id and the other tenant's user_id.
    EXECUTE format('SELECT to_jsonb(x) FROM %s AS x WHERE user_id = $1 LIMIT 1', t) INTO v_row USING p_own;
    v_row := v_row || jsonb_build_object('user_id', p_other);
    IF v_row ? 'id' AND jsonb_typeof(v_row -> 'id') = 'string' THEN
      v_row := v_row || jsonb_build_object('id', gen_random_uuid());
    END IF;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO v_cols
    FROM pg_attribute AS a
    WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attgenerated = '' AND a.attidentity = ''
      AND has_column_privilege('keen_app', p_table, a.attnum, 'INSERT');
    v_res := tap.attempt(format('INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, %L)',
                                    t, v_cols, v_cols, t, v_row));
    -- RLS WITH CHECK (42501); a BEFORE trigger that cannot see the other tenant's parent
    -- row (KE006, KE013) or a tenant-scoped foreign key (23503) may refuse it first.
    RETURN NEXT ok(v_res ~ '^(42501 new row violates row-level security|KE006|KE013|23503)',
                   t || ': INSERT with another tenant''s user_id is refused (' || v_res || ')');
  ELSE
    v_res := tap.attempt(format('INSERT INTO %s DEFAULT VALUES', t));
    RETURN NEXT ok(v_res ~ '^42501 permission denied', t || ': INSERT is not granted to keen_app (' || v_res || ')');
  END IF;

  IF has_column_privilege('keen_app', p_table, 'user_id', 'UPDATE') THEN
    v_res := tap.attempt(format('UPDATE %s SET user_id = %L WHERE user_id = %L', t, p_other, p_own));
    RETURN NEXT ok(v_res ~ '^(42501|23503|KE006|KE013)', t || ': a tenant cannot hand its rows to another tenant (' || v_res || ')');
  ELSE
    RETURN NEXT ok(true, t || ': a tenant cannot hand its rows to another tenant (user_id not updatable)');
  END IF;

  PERFORM set_config('app.current_user_id', '', true);
  EXECUTE format('SELECT count(user_id) FROM %s', t) INTO v_all;
  PERFORM set_config('app.current_user_id', p_own::text, true);
  RETURN NEXT is(v_all, 0::bigint, t || ': without tenant context no row is visible');
END
$$;

-- Calls, as the current role with NULL arguments, every function in keen that keen_app may
-- execute (p_granted: the tenant API, SECURITY DEFINER writers included — not a trigger, not
-- listed in p_skip) or may not (NOT p_granted: all of them, triggers too); returns those whose error
-- does not match p_expected. In the target list, not FROM: trigger functions are refused in
-- FROM before any privilege check.
CREATE FUNCTION tap.calls_not_raising(p_granted boolean, p_skip text[], p_expected text)
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  v_fn record;
  v_res text;
  v_bad text[] := '{}';
BEGIN
  FOR v_fn IN
    SELECT p.oid::regprocedure::text AS signature,
           format('SELECT %s(%s)', p.oid::regproc,
                  coalesce((SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY i)
                            FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS u(t, i)), '')) AS call
    FROM pg_proc AS p
    WHERE p.pronamespace = 'keen'::regnamespace AND p.prokind = 'f'
      AND has_function_privilege('keen_app', p.oid, 'EXECUTE') = p_granted
      AND (NOT p_granted OR p.prorettype <> 'trigger'::regtype)
      AND p.oid::regprocedure::text <> ALL (p_skip)
    ORDER BY 1
  LOOP
    v_res := tap.attempt(v_fn.call);
    IF v_res !~ p_expected THEN
      v_bad := v_bad || (v_fn.signature || ': ' || v_res);
    END IF;
  END LOOP;
  RETURN v_bad;
END
$$;
GRANT EXECUTE ON FUNCTION tap.attempt(text), tap.rls_matrix(regclass, uuid, uuid),
  tap.calls_not_raising(boolean, text[], text) TO keen_app;
GRANT USAGE ON SCHEMA tap TO keen_owner;

-- ===== structure =============================================================
SELECT set_eq(
  $$SELECT c.relname::text FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
    WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'p') AND a.attname = 'user_id'
      AND c.relname <> 'tenant_lookup'$$,
  ARRAY['agent_sessions', 'auth_tokens', 'credit_accounts', 'credit_holds', 'credit_transactions',
        'daily_usage_stats', 'recharge_requests', 'session_events', 'user_audit_log', 'users',
        'websocket_connections'],
  'the tenant tables (every table with a user_id but the cross-tenant keen.tenant_lookup) are exactly these');
SELECT is_empty(
  $$SELECT c.relname FROM pg_class AS c
    WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'p')
      AND EXISTS (SELECT FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attname = 'user_id')
      AND NOT (c.relrowsecurity AND c.relforcerowsecurity)$$,
  'every tenant table has row-level security enabled and forced');
SELECT set_eq(
  $$SELECT tablename || ' ' || policyname || ' ' || cmd || ' ' || array_to_string(roles, ',')
    FROM pg_policies WHERE schemaname = 'keen'$$,
  ARRAY[
    'agent_sessions owner_all ALL keen_owner', 'agent_sessions select_own SELECT keen_app',
    'auth_tokens owner_all ALL keen_owner', 'auth_tokens select_own SELECT keen_app',
    'credit_accounts owner_all ALL keen_owner', 'credit_accounts select_own SELECT keen_app',
    'credit_holds owner_all ALL keen_owner', 'credit_holds select_own SELECT keen_app',
    'credit_transactions owner_all ALL keen_owner', 'credit_transactions select_own SELECT keen_app',
    'daily_usage_stats owner_all ALL keen_owner', 'daily_usage_stats select_own SELECT keen_app',
    'recharge_requests owner_all ALL keen_owner', 'recharge_requests select_own SELECT keen_app',
    'session_events owner_all ALL keen_owner', 'session_events select_own SELECT keen_app',
    'session_limits owner_all ALL keen_owner', 'session_limits select_all SELECT keen_app',
    'session_usage_queue owner_all ALL keen_owner',
    'tenant_lookup owner_all ALL keen_owner',
    'user_audit_log owner_all ALL keen_owner', 'user_audit_log select_own SELECT keen_app',
    'users owner_all ALL keen_owner', 'users select_own SELECT keen_app',
    'websocket_connections owner_all ALL keen_owner', 'websocket_connections select_own SELECT keen_app'
  ],
  'the row-level security policies are exactly these: keen_app reads its own rows, writes none (the definer functions do, as keen_owner)');
SELECT is_empty(
  $$SELECT tablename, policyname FROM pg_policies
    WHERE schemaname = 'keen' AND 'keen_app' = ANY (roles)
      AND EXISTS (SELECT FROM pg_attribute AS a
                  WHERE a.attrelid = format('keen.%I', tablename)::regclass AND a.attname = 'user_id')
      AND (coalesce(qual, with_check) <> format('(%s = keen.current_user_id())', CASE tablename WHEN 'users' THEN 'id' ELSE 'user_id' END)
           OR coalesce(with_check, qual) <> format('(%s = keen.current_user_id())', CASE tablename WHEN 'users' THEN 'id' ELSE 'user_id' END))$$,
  'every keen_app policy of a tenant table is user_id = keen.current_user_id() (users: its key id): a stable call, an index condition read once per scan, and the form Citus pushes to the shards');
SELECT results_eq(
  $$SELECT rolname::text COLLATE "default", rolsuper, rolbypassrls, rolcanlogin FROM pg_roles
    WHERE rolname IN ('keen_owner', 'keen_app', 'keen_analytics') ORDER BY rolname$$,
  $$VALUES ('keen_analytics', false, false, false), ('keen_app', false, false, false),
           ('keen_owner', false, false, false)$$,
  'the three roles are NOLOGIN, NOSUPERUSER and NOBYPASSRLS');
SELECT set_eq(
  $$SELECT p.oid::regprocedure::text FROM pg_proc AS p
    WHERE p.pronamespace = 'keen'::regnamespace AND p.prosecdef$$,
  ARRAY[
    -- the cross-tenant operations DESIGN.md allows
    'keen.authenticate_token(text,inet)', 'keen.end_idle_transactions(interval)', 'keen.login_lookup(text)',
    'keen.reap_stale_connections(interval)',
    'keen.refresh_dashboard_metrics()', 'keen.register_user(text,text,text,text,text)',
    -- the tenant writers: the tenant from keen.require_user_id(), user_id named by value
    'keen.add_credits(numeric,text,text,text,text,jsonb)', 'keen.cancel_session(text)',
    'keen.capture_hold(uuid,numeric,text)', 'keen.close_connection(text)',
    'keen.complete_session(text,boolean,numeric,text[],text[],text[],jsonb,text)',
    'keen.configure_auto_recharge(boolean,numeric,numeric)',
    'keen.create_auth_token(text,text,text,text[],timestamp with time zone,integer,inet,text)',
    'keen.deduct_credits(numeric,uuid,text,text)', 'keen.hold_credits(uuid,numeric,text,interval)',
    'keen.open_connection(text,inet,text,text,text,text[],text[])', 'keen.ping_connection(text)',
    'keen.record_login(inet)', 'keen.release_hold(uuid)', 'keen.revoke_token(uuid)',
    'keen.rotate_refresh_token(text,text,timestamp with time zone,inet,text)',
    'keen.set_spending_limits(numeric,numeric)', 'keen.start_session(text,text,text,text,text)',
    'keen.update_session_progress(text,text,integer,integer,bigint,numeric)',
    -- the user's account writers (0010)
    'keen.change_email(text,text,timestamp with time zone)', 'keen.change_password(text,boolean)',
    'keen.close_account()', 'keen.confirm_email(text)', 'keen.disable_mfa()', 'keen.enable_mfa()',
    'keen.enroll_mfa(text,text[])', 'keen.get_mfa_secret()', 'keen.start_email_verification(text,timestamp with time zone)',
    'keen.update_profile(text,text,text,jsonb)', 'keen.use_recovery_code(text)',
    -- the operators' and billing's account writers (0010; not granted to keen_app)
    'keen.reactivate_user(uuid)', 'keen.set_billing(uuid,text,text,text)', 'keen.set_user_role(uuid,text)',
    'keen.suspend_user(uuid,text)',
    -- the deferred stats flush, which fires at COMMIT as keen_app (the users audit trail is
    -- appended by the writers themselves since 0016)
    'keen.tg_session_usage_queue__flush()',
    -- the tenant's readers (0019): on Citus one connection user per transaction, the
    -- writers' keen_owner; each names the context's tenant by value (test_distributable)
    'keen.get_session(text)', 'keen.get_session_by_id(uuid)', 'keen.session_tree(text)',
    'keen.list_sessions(text,timestamp with time zone,uuid,integer)',
    'keen.list_session_events(bigint,text,integer)', 'keen.session_events_waiting(text)',
    'keen.check_credits(numeric)', 'keen.credit_balance()', 'keen.list_credit_transactions(integer)',
    'keen.usage_report(date,date)', 'keen.session_cost_breakdown(text)',
    'keen.current_user_profile()', 'keen.list_auth_tokens()', 'keen.own_user_audit_log(bigint,integer)'],
  'the SECURITY DEFINER functions are exactly the cross-tenant operations DESIGN.md allows and the tenant writers');
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc AS p
    WHERE p.pronamespace = 'keen'::regnamespace
      AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)$$,
  'every function in keen pins search_path to pg_catalog, pg_temp (pg_temp last: no temporary object shadows ours)');
SELECT results_eq(
  $$SELECT r, has_database_privilege(r, current_database(), 'TEMP')
    FROM unnest(ARRAY['keen_app', 'keen_analytics', 'keen_owner']) AS r$$,
  $$VALUES ('keen_app', false), ('keen_analytics', false), ('keen_owner', true)$$,
  'keen_app and keen_analytics cannot create temporary objects (nor can any login through PUBLIC); keen_owner can (REFRESH CONCURRENTLY)');
SELECT is_empty(
  $$SELECT c.relname FROM pg_class AS c
    WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'p')
      AND EXISTS (SELECT FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attname = 'user_id')
      AND c.relname <> 'tenant_lookup'  -- keyed by the value, not by a tenant
      AND NOT EXISTS (SELECT FROM pg_index AS i JOIN pg_attribute AS a
                        ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                      WHERE i.indrelid = c.oid AND a.attname = CASE c.relname WHEN 'users' THEN 'id' ELSE 'user_id' END)$$,
  'every tenant table has an index leading with user_id, which the policies'' predicate uses');
SELECT is_empty(
  $$SELECT c.relname FROM pg_class AS c
    WHERE c.relnamespace = 'keen'::regnamespace AND c.relowner <> 'keen_owner'::regrole
    UNION ALL
    SELECT p.proname FROM pg_proc AS p
    WHERE p.pronamespace = 'keen'::regnamespace AND p.proowner <> 'keen_owner'::regrole$$,
  'keen_owner owns every relation and function in keen (definers run as it, under its policies)');
-- Every grant in keen to keen_app, keen_analytics or PUBLIC (types excluded: PUBLIC may use
-- every type by default, which grants no access to data).
SELECT set_eq(
  $$WITH grantees (oid, name) AS (
      SELECT 0::oid, 'PUBLIC'
      UNION ALL SELECT oid, rolname::text FROM pg_roles WHERE rolname IN ('keen_app', 'keen_analytics')
    ), acl (object, privilege_type, grantee) AS (
      SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'm' THEN 'materialized view'
                            WHEN 'v' THEN 'view' ELSE 'table' END || ' ' || c.oid::regclass::text,
             a.privilege_type, a.grantee
      FROM pg_class AS c
      CROSS JOIN LATERAL aclexplode(coalesce(c.relacl,
        acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) AS a
      WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      UNION ALL
      SELECT 'column ' || c.oid::regclass::text || '.' || quote_ident(at.attname), a.privilege_type, a.grantee
      FROM pg_class AS c
      JOIN pg_attribute AS at ON at.attrelid = c.oid AND at.attnum > 0 AND NOT at.attisdropped
      CROSS JOIN LATERAL aclexplode(at.attacl) AS a
      WHERE c.relnamespace = 'keen'::regnamespace
      UNION ALL
      SELECT 'function ' || p.oid::regprocedure::text, a.privilege_type, a.grantee
      FROM pg_proc AS p
      CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
      WHERE p.pronamespace = 'keen'::regnamespace
      UNION ALL
      SELECT 'schema keen', a.privilege_type, a.grantee
      FROM pg_namespace AS n
      CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
      WHERE n.nspname = 'keen'
    )
    SELECT acl.object || ' ' || acl.privilege_type || ' ' || g.name
    FROM acl JOIN grantees AS g ON g.oid = acl.grantee$$,
  ARRAY[
    'schema keen USAGE keen_analytics',
    'schema keen USAGE keen_app',
    'materialized view keen.dashboard_metrics SELECT keen_analytics',
    'table keen.agent_sessions SELECT keen_app',
    'table keen.auth_tokens SELECT keen_app',
    'table keen.credit_accounts SELECT keen_app',
    'table keen.credit_holds SELECT keen_app',
    'table keen.credit_transactions SELECT keen_app',
    'table keen.daily_usage_stats SELECT keen_app',
    'table keen.recharge_requests SELECT keen_app',
    'table keen.session_events SELECT keen_app',
    'table keen.session_limits SELECT keen_app',
    'table keen.user_audit_log SELECT keen_app',
    'table keen.websocket_connections SELECT keen_app',
    'column keen.users.account_status SELECT keen_app',
    'column keen.users.avatar_url SELECT keen_app',
    'column keen.users.billing_customer_id SELECT keen_app',
    'column keen.users.email_verification_expires_at SELECT keen_app',
    'column keen.users.suspended_reason SELECT keen_app',
    'column keen.users.admin_privileges SELECT keen_app',
    'column keen.users.created_at SELECT keen_app',
    'column keen.users.display_name SELECT keen_app',
    'column keen.users.email SELECT keen_app',
    'column keen.users.email_verified SELECT keen_app',
    'column keen.users.id SELECT keen_app',
    'column keen.users.is_admin SELECT keen_app',
    'column keen.users.last_login_at SELECT keen_app',
    'column keen.users.last_login_ip SELECT keen_app',
    'column keen.users.mfa_enabled SELECT keen_app',
    'column keen.users.preferences SELECT keen_app',
    'column keen.users.role SELECT keen_app',
    'column keen.users.subscription_status SELECT keen_app',
    'column keen.users.subscription_tier SELECT keen_app',
    'column keen.users.timezone SELECT keen_app',
    'column keen.users.updated_at SELECT keen_app',
    'column keen.users.user_id SELECT keen_app',
    'column keen.users.username SELECT keen_app',
    'function keen.add_credits(numeric,text,text,text,text,jsonb) EXECUTE keen_app',
    'function keen.authenticate_token(text,inet) EXECUTE keen_app',
    'function keen.cancel_session(text) EXECUTE keen_app',
    'function keen.change_email(text,text,timestamp with time zone) EXECUTE keen_app',
    'function keen.change_password(text,boolean) EXECUTE keen_app',
    'function keen.capture_hold(uuid,numeric,text) EXECUTE keen_app',
    'function keen.check_credits(numeric) EXECUTE keen_app',
    'function keen.check_text(text,text,integer,boolean) EXECUTE keen_app',
    'function keen.close_account() EXECUTE keen_app',
    'function keen.close_connection(text) EXECUTE keen_app',
    'function keen.complete_session(text,boolean,numeric,text[],text[],text[],jsonb,text) EXECUTE keen_app',
    'function keen.configure_auto_recharge(boolean,numeric,numeric) EXECUTE keen_app',
    'function keen.confirm_email(text) EXECUTE keen_app',
    'function keen.create_auth_token(text,text,text,text[],timestamp with time zone,integer,inet,text) EXECUTE keen_app',
    'function keen.credit_balance() EXECUTE keen_app',
    'function keen.credit_local_date(uuid,timestamp with time zone) EXECUTE keen_app',
    'function keen.current_user_id() EXECUTE keen_app',
    'function keen.deduct_credits(numeric,uuid,text,text) EXECUTE keen_app',
    'function keen.disable_mfa() EXECUTE keen_app',
    'function keen.enable_mfa() EXECUTE keen_app',
    'function keen.enroll_mfa(text,text[]) EXECUTE keen_app',
    'function keen.get_mfa_secret() EXECUTE keen_app',
    'function keen.get_session(text) EXECUTE keen_app',
    'function keen.get_session_by_id(uuid) EXECUTE keen_app',
    'function keen.hold_credits(uuid,numeric,text,interval) EXECUTE keen_app',
    'function keen.list_session_events(bigint,text,integer) EXECUTE keen_app',
    'function keen.current_user_profile() EXECUTE keen_app',
    'function keen.list_auth_tokens() EXECUTE keen_app',
    'function keen.list_credit_transactions(integer) EXECUTE keen_app',
    'function keen.list_user_audit_log(bigint,integer) EXECUTE keen_app',
    'function keen.own_user_audit_log(bigint,integer) EXECUTE keen_app',
    'function keen.list_sessions(text,timestamp with time zone,uuid,integer) EXECUTE keen_app',
    'function keen.session_events_waiting(text) EXECUTE keen_app',
    'function keen.login_lookup(text) EXECUTE keen_app',
    'function keen.open_connection(text,inet,text,text,text,text[],text[]) EXECUTE keen_app',
    'function keen.ping_connection(text) EXECUTE keen_app',
    'function keen.record_login(inet) EXECUTE keen_app',
    'function keen.refresh_dashboard_metrics() EXECUTE keen_analytics',
    'function keen.register_user(text,text,text,text,text) EXECUTE keen_app',
    'function keen.release_hold(uuid) EXECUTE keen_app',
    'function keen.require_user_id() EXECUTE keen_app',
    'function keen.revoke_token(uuid) EXECUTE keen_app',
    'function keen.rotate_refresh_token(text,text,timestamp with time zone,inet,text) EXECUTE keen_app',
    'function keen.round_cost(numeric) EXECUTE keen_app',
    'function keen.session_cost_breakdown(text) EXECUTE keen_app',
    'function keen.session_tree(text) EXECUTE keen_app',
    'function keen.session_uuid(text) EXECUTE keen_app',
    'function keen.set_client_ip(inet) EXECUTE keen_app',
    'function keen.set_spending_limits(numeric,numeric) EXECUTE keen_app',
    'function keen.start_email_verification(text,timestamp with time zone) EXECUTE keen_app',
    'function keen.start_session(text,text,text,text,text) EXECUTE keen_app',
    'function keen.text_prefix(text) EXECUTE keen_app',
    'function keen.update_profile(text,text,text,jsonb) EXECUTE keen_app',
    'function keen.update_session_progress(text,text,integer,integer,bigint,numeric) EXECUTE keen_app',
    'function keen.usage_report(date,date) EXECUTE keen_app',
    'function keen.use_recovery_code(text) EXECUTE keen_app',
    'function keen.validate_credit_amount(numeric,text) EXECUTE keen_app'
  ],
  'every grant to keen_app, keen_analytics and PUBLIC in keen is listed here (PUBLIC has none; keen_app holds SELECT and no other table privilege)');
-- A unique key on a value a tenant chooses must include user_id, or it reveals (and blocks)
-- other tenants' values. The values global by nature (e-mail, username, token hashes,
-- billing customer ids) are unique through keen.tenant_lookup since 0016, which keen_app
-- cannot read:
SELECT is_empty(
  $$SELECT i.indexrelid::regclass::text
    FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid
    WHERE c.relnamespace = 'keen'::regnamespace AND i.indisunique AND NOT i.indisprimary
      AND EXISTS (SELECT FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attname = 'user_id')
      AND NOT EXISTS (SELECT FROM pg_attribute AS a
                      WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND a.attnum = ANY (i.indkey))$$,
  'no unique key of a tenant table lacks user_id (the cross-tenant values are in keen.tenant_lookup)');
SELECT ok(NOT EXISTS (SELECT FROM pg_class AS c
                      WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'p')
                        AND has_table_privilege('keen_analytics', c.oid, 'SELECT')),
  'keen_analytics reads no raw table');
SELECT ok(has_table_privilege('keen_analytics', 'keen.dashboard_metrics', 'SELECT'),
  'keen_analytics reads dashboard_metrics');

-- ===== fixtures: tenants A and B with a row in every tenant table ===========
CREATE FUNCTION tap.sha(p_token text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT encode(sha256(convert_to(p_token, 'UTF8')), 'hex') $$;
GRANT EXECUTE ON FUNCTION tap.sha(text) TO keen_app;
DO $$
DECLARE
  v_tenant text;
  v_user uuid;
  v_session uuid;
  v_txn uuid;
  v_account uuid;
  v_id uuid;
BEGIN
  FOREACH v_tenant IN ARRAY ARRAY['a', 'b'] LOOP
    v_user := keen.register_user(v_tenant || '@iso.example', 'tenant_' || v_tenant, repeat('h', 40));
    -- The rest through the public API, as the service in the tenant's context.
    PERFORM set_config('role', 'keen_app', true), set_config('app.current_user_id', v_user::text, true);
    SELECT id INTO v_account FROM keen.credit_accounts;
    v_session := (keen.start_session(p_session_id => 's-' || v_tenant, p_vision => 'isolation fixture',
                                     p_working_directory => '/tmp', p_git_branch => 'main')).id;
    PERFORM keen.open_connection(p_connection_id => 'c-' || v_tenant, p_client_ip => '10.0.0.1',
                                 p_client_type => 'web', p_session_id => 's-' || v_tenant);
    v_id := (keen.create_auth_token(p_token_type => 'api_key', p_token_hash => tap.sha('token-' || v_tenant))).id;
    PERFORM set_config('test.token_' || v_tenant, v_id::text, true);
    v_txn := (keen.add_credits(p_amount => 100, p_transaction_type => 'purchase', p_description => 'isolation fixture')).id;
    v_id := (keen.hold_credits(p_session_id => v_session, p_amount => 10)).id;
    PERFORM set_config('test.hold_' || v_tenant, v_id::text, true);
    PERFORM set_config('test.user_' || v_tenant, v_user::text, true);
    PERFORM set_config('test.session_' || v_tenant, v_session::text, true);
    PERFORM set_config('test.account_' || v_tenant, v_account::text, true);
    PERFORM set_config('test.txn_' || v_tenant, v_txn::text, true);
    RESET ROLE;
    -- Rows no API call makes here, written as the owner (keen_app writes no table).
    INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id,
                                        balance_at_request, status, failure_reason, resolved_at)
    VALUES (v_user, v_account, 50, v_txn, 100, 'failed', 'isolation fixture', now());
    INSERT INTO keen.daily_usage_stats (user_id, date_bucket) VALUES (v_user, current_date - 1);
  END LOOP;
END
$$;

-- ===== as the owner (tenant A) ===============================================
SET LOCAL ROLE keen_app;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.user_a'), true); END $$;

SELECT tap.rls_matrix(t::regclass, current_setting('test.user_a')::uuid, current_setting('test.user_b')::uuid)
FROM unnest(ARRAY['keen.users', 'keen.auth_tokens', 'keen.agent_sessions', 'keen.session_events',
                  'keen.websocket_connections', 'keen.credit_accounts', 'keen.credit_transactions',
                  'keen.credit_holds', 'keen.recharge_requests', 'keen.daily_usage_stats']) AS t;

-- not even its own rows are writable directly: the API functions write them
SELECT throws_ok($$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash)
  VALUES (current_setting('test.user_a')::uuid, 'api_key', tap.sha('token-a-2'))$$, '42501', NULL,
  'auth_tokens: a tenant cannot insert even its own row (create_auth_token does)');
SELECT throws_ok($$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, parent_session_id, session_depth)
  VALUES (current_setting('test.user_a')::uuid, 's-a-child', 'main', 'child', '/tmp', current_setting('test.session_a')::uuid, 1)$$,
  '42501', NULL, 'agent_sessions: a tenant cannot insert even its own row (start_session does)');
SELECT throws_ok($$INSERT INTO keen.session_events (user_id, session_id, seq, event_type)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.session_a')::uuid, 100, 'session.progress')$$,
  '42501', NULL, 'session_events: a tenant cannot insert even its own row (the session functions do)');
SELECT throws_ok($$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type)
  VALUES (current_setting('test.user_a')::uuid, 'c-a-2', '10.0.0.2', 'cli')$$,
  '42501', NULL, 'websocket_connections: a tenant cannot insert even its own row (open_connection does)');
SELECT throws_ok($$INSERT INTO keen.credit_transactions (user_id, transaction_type, amount, description)
  VALUES (current_setting('test.user_a')::uuid, 'adjustment', 1, 'own entry')$$,
  '42501', NULL, 'credit_transactions: a tenant cannot append to its own ledger directly (add_credits does)');
SELECT throws_ok($$INSERT INTO keen.credit_holds (user_id, amount, expires_at)
  VALUES (current_setting('test.user_a')::uuid, 1, now() + interval '1 hour')$$,
  '42501', NULL, 'credit_holds: a tenant cannot place a hold directly (hold_credits does)');
SELECT throws_ok($$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id, balance_at_request)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.account_a')::uuid, 50,
          current_setting('test.txn_a')::uuid, 100)$$,
  '42501', NULL, 'recharge_requests: a tenant cannot record a recharge request (the ledger trigger does)');
SELECT throws_ok($$INSERT INTO keen.daily_usage_stats (user_id, date_bucket)
  VALUES (current_setting('test.user_a')::uuid, current_date - 2)$$,
  '42501', NULL, 'daily_usage_stats: a tenant cannot insert even its own row (the triggers do)');

-- referencing another tenant's rows by id: composite (user_id, id) keys make the foreign
-- key fail as if the row did not exist, though foreign-key checks skip RLS. The domain
-- triggers, which refuse most of these first, are switched off here (rolled back) so that
-- the keys themselves are proven; the API calls further down run with every trigger on.
-- Written as keen_owner (whose policy sees every row, as inside the definer functions):
-- keen_app cannot write these tables at all.
RESET ROLE;
SET CONSTRAINTS ALL IMMEDIATE;  -- deferred usage-stats triggers must not be pending
ALTER TABLE keen.agent_sessions DISABLE TRIGGER USER;
ALTER TABLE keen.session_events DISABLE TRIGGER USER;
ALTER TABLE keen.credit_transactions DISABLE TRIGGER USER;
ALTER TABLE keen.credit_holds DISABLE TRIGGER USER;
ALTER TABLE keen.websocket_connections DISABLE TRIGGER USER;
SET LOCAL ROLE keen_owner;
INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, parent_session_id, session_depth)
  VALUES (current_setting('test.user_a')::uuid, 's-a-child', 'main', 'child', '/tmp', current_setting('test.session_a')::uuid, 1);
SELECT throws_ok($$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, parent_session_id, session_depth)
  VALUES (current_setting('test.user_a')::uuid, 's-a-evil', 'main', 'x', '/tmp', current_setting('test.session_b')::uuid, 1)$$,
  '23503', NULL, 'a session cannot have another tenant''s session as parent');
SELECT throws_ok($$INSERT INTO keen.session_events (id, user_id, session_id, seq, event_type)
  VALUES (9, current_setting('test.user_a')::uuid, current_setting('test.session_b')::uuid, 9, 'session.progress')$$,
  '23503', NULL, 'an event cannot be appended to another tenant''s session');
SELECT throws_ok($$INSERT INTO keen.websocket_connections (user_id, session_id, connection_id, client_ip, client_type)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.session_b')::uuid, 'c-a-evil', '10.0.0.3', 'web')$$,
  '23503', NULL, 'a connection cannot follow another tenant''s session');
SELECT throws_ok($$UPDATE keen.websocket_connections SET session_id = current_setting('test.session_b')::uuid
  WHERE connection_id = 'c-a'$$,
  '23503', NULL, 'an own connection cannot be re-pointed at another tenant''s session');
SELECT throws_ok($$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount,
                                          balance_before, balance_after, description)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.account_b')::uuid, 99, 'adjustment', 1, 0, 1, 'x')$$,
  '23503', NULL, 'a ledger entry cannot name another tenant''s account');
SELECT throws_ok($$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount,
                                          balance_before, balance_after, description, session_id)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.account_a')::uuid, 99, 'adjustment', 1, 0, 1, 'x',
          current_setting('test.session_b')::uuid)$$,
  '23503', NULL, 'a ledger entry cannot name another tenant''s session');
SELECT throws_ok($$INSERT INTO keen.credit_holds (user_id, account_id, session_id, amount, expires_at)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.account_a')::uuid,
          current_setting('test.session_b')::uuid, 1, now() + interval '1 hour')$$,
  '23503', NULL, 'a hold cannot name another tenant''s session');
SELECT throws_ok($$INSERT INTO keen.credit_holds (user_id, account_id, amount, expires_at)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.account_b')::uuid, 1, now() + interval '1 hour')$$,
  '23503', NULL, 'a hold cannot name another tenant''s account');
SELECT throws_ok($$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id,
                                        balance_at_request, status, failure_reason, resolved_at)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.account_a')::uuid, 50,
          current_setting('test.txn_b')::uuid, 100, 'failed', 'x', now())$$,
  '23503', NULL, 'a recharge request cannot name another tenant''s ledger entry');
SELECT throws_ok($$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id,
                                        balance_at_request, status, failure_reason, resolved_at)
  VALUES (current_setting('test.user_a')::uuid, current_setting('test.account_b')::uuid, 50,
          current_setting('test.txn_a')::uuid, 100, 'failed', 'x', now())$$,
  '23503', NULL, 'a recharge request cannot name another tenant''s account');
SELECT throws_ok($$UPDATE keen.auth_tokens SET revoked_at = now(), revoked_reason = 'rotated',
  replaced_by = current_setting('test.token_b')::uuid WHERE id = current_setting('test.token_a')::uuid$$,
  '23503', NULL, 'a token cannot be replaced by another tenant''s token');
-- with the guard triggers off, keen_app is still refused rows of another tenant, by privilege
SET LOCAL ROLE keen_app;
SELECT throws_like($$INSERT INTO keen.session_events (user_id, session_id, seq, event_type)
  VALUES (current_setting('test.user_b')::uuid, current_setting('test.session_b')::uuid, 9, 'session.progress')$$,
  'permission denied%', 'session_events: keen_app cannot write a row of another tenant (no INSERT privilege)');
SELECT throws_like($$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount,
                                          balance_before, balance_after, description)
  VALUES (current_setting('test.user_b')::uuid, current_setting('test.account_b')::uuid, 99, 'adjustment', 1, 0, 1, 'x')$$,
  'permission denied%', 'credit_transactions: keen_app cannot write a row of another tenant (no INSERT privilege)');
SELECT throws_like($$INSERT INTO keen.credit_holds (user_id, account_id, amount, expires_at)
  VALUES (current_setting('test.user_b')::uuid, current_setting('test.account_b')::uuid, 1, now() + interval '1 hour')$$,
  'permission denied%', 'credit_holds: keen_app cannot write a row of another tenant (no INSERT privilege)');
SELECT throws_like($$UPDATE keen.agent_sessions SET user_id = current_setting('test.user_b')::uuid WHERE session_id = 's-a-child'$$,
  'permission denied%', 'agent_sessions: keen_app cannot hand a row to another tenant (no UPDATE privilege)');
RESET ROLE;
ALTER TABLE keen.agent_sessions ENABLE TRIGGER USER;
ALTER TABLE keen.session_events ENABLE TRIGGER USER;
ALTER TABLE keen.credit_transactions ENABLE TRIGGER USER;
ALTER TABLE keen.credit_holds ENABLE TRIGGER USER;
ALTER TABLE keen.websocket_connections ENABLE TRIGGER USER;
SET LOCAL ROLE keen_app;
SELECT throws_ok($$SELECT keen.revoke_token(current_setting('test.token_b')::uuid)$$, 'KE006', NULL,
  'revoke_token of another tenant''s token raises KE006');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1, p_session_id => current_setting('test.session_b')::uuid)$$,
  'KE006', NULL, 'deduct_credits for another tenant''s session raises KE006');
SELECT throws_ok($$SELECT keen.hold_credits(p_session_id => current_setting('test.session_b')::uuid, p_amount => 1)$$,
  'KE006', NULL, 'hold_credits for another tenant''s session raises KE006');
SELECT throws_ok($$SELECT keen.capture_hold(p_hold_id => current_setting('test.hold_b')::uuid, p_amount => 1)$$,
  'KE006', NULL, 'capture_hold of another tenant''s hold raises KE006');
SELECT throws_ok($$SELECT keen.release_hold(p_hold_id => current_setting('test.hold_b')::uuid)$$,
  'KE006', NULL, 'release_hold of another tenant''s hold raises KE006');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 's-a-2', p_vision => 'x', p_working_directory => '/tmp',
  p_git_branch => 'main', p_parent_session_id => 's-b')$$,
  'KE006', NULL, 'start_session under another tenant''s parent session raises KE006');
SELECT throws_ok($$SELECT keen.get_session(p_session_id => 's-b')$$,
  'KE006', NULL, 'get_session of another tenant''s session raises KE006');
SELECT throws_ok($$SELECT keen.ping_connection(p_connection_id => 'c-b')$$,
  'KE006', NULL, 'ping_connection of another tenant''s connection raises KE006');
SELECT throws_ok($$SELECT keen.close_connection(p_connection_id => 'c-b')$$,
  'KE006', NULL, 'close_connection of another tenant''s connection raises KE006');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'c-a-3', p_client_ip => '10.0.0.4',
  p_client_type => 'web', p_session_id => 's-b')$$,
  'KE006', NULL, 'open_connection following another tenant''s session raises KE006');

-- what keen_app can never do, even to its own rows
SELECT throws_ok($$SELECT * FROM keen.dashboard_metrics$$, '42501', NULL,
  'keen_app cannot read dashboard_metrics (cross-tenant figures)');
SELECT throws_ok($$ALTER TABLE keen.users ADD COLUMN x integer$$, '42501', NULL, 'keen_app cannot alter tables');
SELECT throws_ok($$CREATE TABLE keen.evil (id integer)$$, '42501', NULL, 'keen_app cannot create objects in keen');
SELECT throws_ok($$UPDATE keen.credit_transactions SET description = 'x'$$, '42501', NULL,
  'keen_app cannot UPDATE the ledger');
SELECT throws_ok($$DELETE FROM keen.credit_transactions$$, '42501', NULL, 'keen_app cannot DELETE from the ledger');
SELECT throws_ok($$TRUNCATE keen.credit_transactions$$, '42501', NULL, 'keen_app cannot TRUNCATE the ledger');

-- internal helpers, called directly: refused, or no further than the tenant's own rows
SELECT is(tap.calls_not_raising(false, '{}', '^42501 permission denied for function'), '{}'::text[],
  'every keen function not granted to keen_app (operators, billing, triggers, in_migration) refuses it with 42501');
SELECT throws_ok($$SELECT keen.in_migration()$$, '42501', NULL,
  'keen_app cannot call in_migration (it never reaches the append-only trigger that does)');
SELECT throws_ok($$SELECT keen.rebuild_usage_stats(current_setting('test.user_a')::uuid)$$, '42501', NULL,
  'keen_app cannot rewrite daily_usage_stats with rebuild_usage_stats');
SELECT throws_ok($$SELECT keen.extend_hold(current_setting('test.user_b')::uuid, current_setting('test.hold_b')::uuid, 1)$$, '42501', NULL,
  'keen_app cannot call extend_hold (only the definer functions do, for their own tenant)');
SELECT throws_ok($$SELECT keen.capture_hold(p_hold_id => current_setting('test.hold_b')::uuid)$$, 'KE006', NULL,
  'capture_hold of another tenant''s hold raises KE006 (the definer names user_id by value; its own policy would show it)');
SELECT throws_ok($$SELECT keen.release_hold(current_setting('test.hold_b')::uuid)$$, 'KE006', NULL,
  'release_hold of another tenant''s hold raises KE006');
SELECT hasnt_function('keen', 'lock_event_stream', ARRAY['uuid'],
  'there is no event-stream lock to take any more (migration 0013: event ids need no per-user lock)');
SELECT throws_ok($$SELECT keen.add_usage_deltas(ARRAY[ROW(current_setting('test.user_b')::uuid, current_date,
  1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)::keen.usage_delta])$$,
  '42501', NULL, 'keen_app cannot call add_usage_deltas (only the stats triggers do, as keen_owner)');

-- ===== as another tenant (B) =================================================
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.user_b'), true); END $$;
SELECT is((SELECT count(*) FROM keen.agent_sessions WHERE session_id LIKE 's-a%'), 0::bigint,
  'tenant B sees none of tenant A''s sessions, including the ones added above');
SELECT is((SELECT array_agg(username) FROM keen.users), ARRAY['tenant_b'::text], 'tenant B sees only its own user');

-- ===== without tenant context ================================================
DO $$ BEGIN PERFORM set_config('app.current_user_id', '', true); END $$;
SELECT is(keen.current_user_id(), NULL, 'an empty setting (what a committed local setting leaves) means no tenant');
SELECT is((SELECT count(*) FROM keen.auth_tokens), 0::bigint, 'an empty setting shows no rows and raises no cast error');
SELECT is(tap.calls_not_raising(true, ARRAY[
    -- pure helpers that read nothing of a tenant
    'keen.current_user_id()', 'keen.require_user_id()', 'keen.set_client_ip(inet)',
    'keen.round_cost(numeric)', 'keen.validate_credit_amount(numeric,text)',
    'keen.credit_local_date(uuid,timestamp with time zone)',
    'keen.text_prefix(text)', 'keen.check_text(text,text,integer,boolean)',
    -- the cross-tenant definers, which need no tenant
    'keen.register_user(text,text,text,text,text)', 'keen.login_lookup(text)', 'keen.authenticate_token(text,inet)',
    'keen.confirm_email(text)',
    -- an operator's page of every user's trail: a service without tenant reads nothing (RLS)
    'keen.list_user_audit_log(bigint,integer)'
  ], '^KE010'), '{}'::text[],
  'every tenant API function, SECURITY DEFINER writers included, raises KE010 without tenant context');
SELECT is((SELECT count(*) FROM keen.list_user_audit_log(NULL, 1000)), 0::bigint,
  'without tenant the service reads no one''s trail: the operators'' all-tenant page is empty under RLS');
RESET ROLE;
SELECT is((SELECT keen.current_user_id() FROM (SELECT set_config('app.current_user_id', 'not-a-uuid', true)) AS s), NULL,
  'a malformed tenant id is no tenant (fail closed), never an error and never a match');

SELECT * FROM finish();
ROLLBACK;
