-- Accounts (migration 0010): the original columns, every account function as the user, as
-- another tenant and without context; operators and billing; secrets only hashed or
-- encrypted; the audit trail (one row per change, none after a rollback, append-only); and
-- closing an account (erasure that leaves the ledger and usage history verifiable).
BEGIN;
SELECT plan(188);

GRANT USAGE ON SCHEMA tap TO keen_app;

-- ===== structure =============================================================
-- Every column of the original design's six tables (Ahiya1/keens 001_initial_schema.sql,
-- plus the two users columns issue 20 names) exists, but the three docs/schema.md removes.
SELECT results_eq(
  $$SELECT o.tbl || '.' || c.col
    FROM (VALUES
      ('users', ARRAY['id', 'email', 'username', 'password_hash', 'display_name', 'role', 'is_admin',
        'admin_privileges', 'email_verified', 'email_verification_token', 'account_status', 'mfa_enabled',
        'mfa_secret', 'recovery_codes', 'timezone', 'preferences', 'created_at', 'updated_at',
        'last_login_at', 'last_login_ip', 'avatar_url', 'billing_customer_id']),
      ('auth_tokens', ARRAY['id', 'user_id', 'token_type', 'token_hash', 'token_name', 'scopes', 'expires_at',
        'last_used_at', 'usage_count', 'created_ip', 'last_used_ip', 'user_agent', 'is_active',
        'rate_limit_per_hour', 'created_at', 'updated_at']),
      ('credit_accounts', ARRAY['id', 'user_id', 'current_balance', 'lifetime_purchased', 'lifetime_spent',
        'unlimited_credits', 'daily_limit', 'monthly_limit', 'auto_recharge_enabled', 'auto_recharge_threshold',
        'auto_recharge_amount', 'account_status', 'suspended_reason', 'created_at', 'updated_at']),
      ('credit_transactions', ARRAY['id', 'user_id', 'account_id', 'transaction_type', 'amount', 'balance_after',
        'claude_cost_usd', 'markup_multiplier', 'session_id', 'description', 'metadata', 'is_admin_bypass',
        'created_at', 'created_by_ip', 'reconciliation_status']),
      ('agent_sessions', ARRAY['id', 'user_id', 'session_id', 'parent_session_id', 'session_depth', 'git_branch',
        'vision', 'working_directory', 'current_phase', 'start_time', 'end_time', 'last_activity_at',
        'phase_started_at', 'iteration_count', 'tool_calls_count', 'total_cost', 'tokens_used',
        'context_window_size', 'files_modified', 'files_created', 'files_deleted', 'execution_status', 'success',
        'error_message', 'completion_report', 'streaming_enabled', 'streaming_time', 'websocket_connections',
        'agent_options', 'created_at', 'updated_at']),
      ('websocket_connections', ARRAY['id', 'user_id', 'session_id', 'connection_id', 'client_ip', 'user_agent',
        'client_type', 'connected_at', 'last_ping_at', 'disconnected_at', 'subscribed_events', 'session_filters',
        'connection_status', 'created_at', 'updated_at'])
    ) AS o (tbl, cols)
    CROSS JOIN LATERAL unnest(o.cols) AS c (col)
    WHERE NOT EXISTS (SELECT FROM pg_attribute AS a
                      WHERE a.attrelid = ('keen.' || o.tbl)::regclass AND a.attname = c.col AND NOT a.attisdropped)
    ORDER BY 1$$,
  ARRAY['credit_accounts.unlimited_credits', 'credit_transactions.is_admin_bypass',
        'credit_transactions.reconciliation_status'],
  'every original column of the six original tables exists, but the three documented removals');
SELECT columns_are('keen', 'user_audit_log',
  ARRAY['id', 'user_id', 'actor', 'action', 'changes', 'ip', 'actor_role', 'created_at'],
  'keen.user_audit_log has exactly the contract''s columns, an id and the acting login');
SELECT col_type_is('keen', 'user_audit_log', 'changes', 'jsonb', 'user_audit_log.changes is jsonb');
SELECT col_type_is('keen', 'user_audit_log', 'ip', 'inet', 'user_audit_log.ip is inet');
SELECT fk_ok('keen', 'user_audit_log', 'user_id', 'keen', 'users', 'id', 'an audit row belongs to a user');
SELECT policies_are('keen', 'user_audit_log', ARRAY['owner_all', 'select_own'],
  'user_audit_log: tenants only read (select_own); no write policy for keen_app');
SELECT is(
  (SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc AS p
    WHERE p.pronamespace = 'keen'::regnamespace AND p.prosecdef
      AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
      AND p.proname IN ('update_profile', 'change_password', 'start_email_verification', 'confirm_email',
                        'change_email', 'enroll_mfa', 'enable_mfa', 'disable_mfa', 'get_mfa_secret',
                        'use_recovery_code', 'close_account', 'suspend_user', 'reactivate_user',
                        'set_user_role', 'set_billing', 'tg_users__audit')),
  NULL, 'every account function is SECURITY DEFINER with search_path pg_catalog, pg_temp');
SELECT is(
  (SELECT count(*)::integer FROM pg_proc AS p
    WHERE p.pronamespace = 'keen'::regnamespace AND p.prosecdef
      AND p.proname IN ('update_profile', 'change_password', 'start_email_verification', 'confirm_email',
                        'change_email', 'enroll_mfa', 'enable_mfa', 'disable_mfa', 'get_mfa_secret',
                        'use_recovery_code', 'close_account', 'suspend_user', 'reactivate_user',
                        'set_user_role', 'set_billing')),
  15, 'the fifteen account functions are SECURITY DEFINER');
SELECT function_privs_are('keen', 'update_profile', ARRAY['text', 'text', 'text', 'jsonb'], 'keen_app', ARRAY['EXECUTE'],
  'keen_app executes update_profile');
SELECT function_privs_are('keen', 'confirm_email', ARRAY['text'], 'keen_app', ARRAY['EXECUTE'],
  'keen_app executes confirm_email (no tenant needed)');
SELECT function_privs_are('keen', 'suspend_user', ARRAY['uuid', 'text'], 'keen_app', ARRAY[]::text[],
  'keen_app cannot execute suspend_user (operators only)');
SELECT function_privs_are('keen', 'reactivate_user', ARRAY['uuid'], 'keen_app', ARRAY[]::text[],
  'keen_app cannot execute reactivate_user (operators only)');
SELECT function_privs_are('keen', 'set_user_role', ARRAY['uuid', 'text'], 'keen_app', ARRAY[]::text[],
  'keen_app cannot execute set_user_role (operators only)');
SELECT function_privs_are('keen', 'set_billing', ARRAY['uuid', 'text', 'text', 'text'], 'keen_app', ARRAY[]::text[],
  'keen_app cannot execute set_billing (billing only)');
SELECT is(pg_catalog.pg_get_function_identity_arguments('keen.update_profile(text,text,text,jsonb)'::regprocedure),
  'p_display_name text, p_avatar_url text, p_timezone text, p_preferences jsonb',
  'update_profile takes the contract''s parameters');
SELECT is(pg_catalog.pg_get_function_identity_arguments('keen.set_billing(uuid,text,text,text)'::regprocedure),
  'p_user_id uuid, p_billing_customer_id text, p_subscription_tier text, p_subscription_status text',
  'set_billing takes the contract''s parameters');

-- ===== fixtures ==============================================================
CREATE FUNCTION pg_temp.sha(p_value text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT encode(sha256(convert_to(p_value, 'UTF8')), 'hex') $$;
-- A stand-in for the service's ciphertext: the database only checks its shape.
CREATE FUNCTION pg_temp.sealed(p_value text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT 'k1:' || encode(sha256(convert_to(p_value, 'UTF8')), 'base64') $$;
CREATE FUNCTION pg_temp.audit_count(p_user text) RETURNS bigint LANGUAGE sql
  AS $$ SELECT count(*) FROM keen.user_audit_log WHERE user_id = p_user::uuid $$;
CREATE FUNCTION pg_temp.last_audit(p_user text) RETURNS keen.user_audit_log LANGUAGE sql
  AS $$ SELECT * FROM keen.user_audit_log WHERE user_id = p_user::uuid ORDER BY id DESC LIMIT 1 $$;
-- Every row of every keen table whose text contains one of the needles (superuser: no RLS).
CREATE FUNCTION pg_temp.rows_mentioning(p_needles text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  v_rel regclass;
  v_count bigint;
BEGIN
  FOR v_rel IN SELECT c.oid::regclass FROM pg_class AS c
               WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind IN ('r', 'm') ORDER BY 1 LOOP
    EXECUTE format('SELECT count(*) FROM %s AS t WHERE EXISTS (SELECT FROM unnest($1) AS n
                      WHERE strpos(lower(t::text), lower(n)) > 0)', v_rel)
      INTO v_count USING p_needles;
    IF v_count > 0 THEN
      RETURN NEXT v_rel::text || ': ' || v_count;
    END IF;
  END LOOP;
END
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pg_temp TO keen_app;

DO $$ BEGIN
  PERFORM set_config('test.alice', keen.register_user(
    p_email => 'alice@example.com', p_username => 'alice', p_password_hash => repeat('a', 40),
    p_display_name => 'Alice')::text, true);
  PERFORM set_config('test.bob', keen.register_user(
    p_email => 'bob@example.com', p_username => 'bob', p_password_hash => repeat('b', 40))::text, true);
END $$;
SELECT results_eq(
  $$SELECT actor, action, changes->'email', changes ? 'password_hash' FROM keen.user_audit_log
    WHERE user_id = current_setting('test.alice')::uuid$$,
  $$VALUES ('user', 'register_user', '{"new": "alice@example.com"}'::jsonb, true)$$,
  'sign-up writes one audit row: the user registered, with the new values');
SELECT is((pg_temp.last_audit(current_setting('test.alice'))).changes->'password_hash', '{"changed": true}'::jsonb,
  'the audit row says the password hash was set, never its value');

-- ===== without tenant context ================================================
SET LOCAL ROLE keen_app;
SELECT throws_ok($$SELECT keen.update_profile(p_display_name => 'x')$$, 'KE010', NULL, 'update_profile without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.change_password(repeat('c', 40))$$, 'KE010', NULL, 'change_password without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.start_email_verification(pg_temp.sha('t'), now() + interval '1 day')$$, 'KE010', NULL,
  'start_email_verification without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.change_email('x@example.com', pg_temp.sha('t'), now() + interval '1 day')$$, 'KE010', NULL,
  'change_email without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.enroll_mfa(pg_temp.sealed('s'), ARRAY[pg_temp.sha('c')])$$, 'KE010', NULL,
  'enroll_mfa without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.enable_mfa()$$, 'KE010', NULL, 'enable_mfa without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.disable_mfa()$$, 'KE010', NULL, 'disable_mfa without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.get_mfa_secret()$$, 'KE010', NULL, 'get_mfa_secret without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.use_recovery_code(pg_temp.sha('c'))$$, 'KE010', NULL, 'use_recovery_code without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.close_account()$$, 'KE010', NULL, 'close_account without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.suspend_user(current_setting('test.alice')::uuid, 'spam')$$, '42501', NULL,
  'keen_app cannot call suspend_user');
SELECT throws_ok($$SELECT keen.set_billing(current_setting('test.alice')::uuid, 'cus_1')$$, '42501', NULL,
  'keen_app cannot call set_billing');
SELECT is_empty($$SELECT id FROM keen.user_audit_log$$, 'without tenant context keen_app sees no audit row');
SELECT throws_ok($$SELECT keen.confirm_email(pg_temp.sha('no such token'))$$, 'KE006', NULL,
  'confirm_email needs no tenant: an unknown token raises KE006');
SELECT throws_ok($$SELECT keen.confirm_email('not-hashed')$$, 'KE013', NULL, 'confirm_email of a non-hash raises KE013');
RESET ROLE;

-- ===== as the user: profile ==================================================
SET LOCAL ROLE keen_app;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.alice'), true); END $$;
SELECT lives_ok($$SELECT keen.set_client_ip('198.51.100.7')$$, 'the service records the client address for the transaction');
SELECT lives_ok($$SELECT keen.update_profile(p_display_name => 'Alice A.', p_avatar_url => 'https://img.example/a.png',
                                             p_timezone => 'Europe/Paris', p_preferences => '{"theme": "dark"}')$$,
  'update_profile changes every field given');
SELECT results_eq($$SELECT display_name, avatar_url, timezone, preferences FROM keen.users$$,
  $$VALUES ('Alice A.', 'https://img.example/a.png', 'Europe/Paris', '{"theme": "dark"}'::jsonb)$$,
  'the caller reads the new profile');
SELECT results_eq(
  $$SELECT actor, action, ip, changes FROM keen.user_audit_log ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('user', 'update_profile', '198.51.100.7'::inet,
            '{"display_name": {"old": "Alice", "new": "Alice A."}, "avatar_url": {"old": null, "new": "https://img.example/a.png"},
              "timezone": {"old": "UTC", "new": "Europe/Paris"}, "preferences": {"old": {}, "new": {"theme": "dark"}}}'::jsonb)$$,
  'one audit row: the user, the function, the client address, old and new value of each field');
SELECT lives_ok($$SELECT keen.update_profile(p_timezone => 'Asia/Tokyo')$$, 'update_profile with one field');
SELECT results_eq($$SELECT display_name, avatar_url, timezone FROM keen.users$$,
  $$VALUES ('Alice A.', 'https://img.example/a.png', 'Asia/Tokyo')$$, 'NULL leaves the other fields as they are');
SELECT lives_ok($$SELECT keen.update_profile(p_display_name => '', p_avatar_url => '')$$, 'empty strings clear');
SELECT results_eq($$SELECT display_name, avatar_url FROM keen.users$$, $$VALUES (NULL::text, NULL::text)$$,
  'an empty display name or avatar URL clears it');
SELECT is(pg_temp.audit_count(current_setting('test.alice')), 4::bigint, 'sign-up and three profile changes: four audit rows');
SELECT lives_ok($$SELECT keen.update_profile()$$, 'update_profile with nothing to change');
SELECT is(pg_temp.audit_count(current_setting('test.alice')), 4::bigint, 'a call that changes nothing writes no audit row');
SELECT throws_ok($$SELECT keen.update_profile(p_display_name => repeat('n', 201))$$, 'KE013', NULL,
  'a display name over 200 characters (register_user''s bound) raises KE013');
SELECT throws_ok($$SELECT keen.update_profile(p_avatar_url => 'http://img.example/a.png')$$, 'KE013', NULL,
  'an avatar URL that is not https raises KE013');
SELECT throws_ok($$SELECT keen.update_profile(p_avatar_url => 'https://x/' || repeat('p', 2048))$$, 'KE013', NULL,
  'an avatar URL over 2048 characters raises KE013');
SELECT throws_ok($$SELECT keen.update_profile(p_timezone => 'Mars/Olympus')$$, 'KE013', NULL, 'an unknown time zone raises KE013');
SELECT throws_ok($$SELECT keen.update_profile(p_timezone => repeat('A', 100000))$$, 'KE013', NULL,
  'a huge time zone raises KE013, not a raw error');
SELECT throws_ok($$SELECT keen.update_profile(p_preferences => '[1, 2]')$$, 'KE013', NULL, 'preferences that are not an object raise KE013');
SELECT throws_ok($$SELECT keen.update_profile(p_preferences => jsonb_build_object('x', repeat('p', 17000)))$$, 'KE013', NULL,
  'preferences over 16 KiB raise KE013');
SELECT throws_like($$SELECT keen.update_profile(p_display_name => repeat('secret', 100))$$,
  'invalid argument: display name ''secretsecretsecretsecret''...',
  'a refused value is quoted by a 24-character prefix at most');
SELECT is(pg_temp.audit_count(current_setting('test.alice')), 4::bigint, 'refused calls write nothing');
SELECT throws_ok($$UPDATE keen.users SET display_name = 'direct'$$, '42501', NULL,
  'keen_app cannot write the profile around update_profile');

-- ===== as the user: password =================================================
DO $$ BEGIN
  PERFORM keen.create_auth_token(p_token_type => 'api_key', p_token_hash => pg_temp.sha('alice-api'));
  PERFORM keen.create_auth_token(p_token_type => 'jwt_refresh', p_token_hash => pg_temp.sha('alice-refresh'),
                                 p_expires_at => now() + interval '1 day');
END $$;
SELECT throws_ok($$SELECT keen.change_password('short')$$, 'KE013', NULL, 'a password hash under 20 characters raises KE013');
SELECT is(keen.change_password(p_password_hash => repeat('n', 40), p_revoke_tokens => false), 0,
  'change_password without revocation revokes nothing');
SELECT is(keen.change_password(p_password_hash => repeat('m', 40)), 2, 'change_password revokes every active token by default');
SELECT is((SELECT count(*) FROM keen.auth_tokens WHERE revoked_at IS NULL), 0::bigint, 'no token of the caller is active');
SELECT results_eq($$SELECT action, changes FROM keen.user_audit_log ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('change_password', '{"password_hash": {"changed": true}}'::jsonb)$$,
  'the audit row of a password change names the field, never the hash');
RESET ROLE;
SELECT is((SELECT password_hash FROM keen.users WHERE id = current_setting('test.alice')::uuid), repeat('m', 40),
  'the new hash is stored');
SET LOCAL ROLE keen_app;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.alice'), true); END $$;

-- ===== as the user: e-mail verification and change ===========================
SELECT throws_ok($$SELECT keen.start_email_verification('plain-token', now() + interval '1 day')$$, 'KE013', NULL,
  'a verification token that is not a SHA-256 digest raises KE013');
SELECT throws_ok($$SELECT keen.start_email_verification(pg_temp.sha('v1'), now() - interval '1 second')$$, 'KE013', NULL,
  'an expiry in the past raises KE013');
SELECT throws_ok($$SELECT keen.start_email_verification(pg_temp.sha('v1'), now() + interval '31 days')$$, 'KE013', NULL,
  'an expiry beyond 30 days raises KE013');
SELECT lives_ok($$SELECT keen.start_email_verification(p_token_hash => pg_temp.sha('v1'), p_expires_at => now() + interval '1 day')$$,
  'start_email_verification stores the token''s hash');
SELECT lives_ok($$SELECT keen.start_email_verification(p_token_hash => pg_temp.sha('v2'), p_expires_at => now() + interval '1 day')$$,
  'a new verification replaces the pending one');
DO $$ BEGIN PERFORM set_config('app.current_user_id', '', true); END $$;
SELECT throws_ok($$SELECT keen.confirm_email(pg_temp.sha('v1'))$$, 'KE006', NULL, 'a replaced token no longer confirms: KE006');
SELECT is(keen.confirm_email(p_token_hash => pg_temp.sha('v2')), current_setting('test.alice')::uuid,
  'confirm_email without tenant returns the user whose e-mail it confirmed');
SELECT throws_ok($$SELECT keen.confirm_email(pg_temp.sha('v2'))$$, 'KE006', NULL, 'a token confirms once: KE006 the second time');
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.alice'), true); END $$;
SELECT results_eq($$SELECT email_verified, email_verification_expires_at FROM keen.users$$,
  $$VALUES (true, NULL::timestamptz)$$, 'the e-mail is verified and no token remains');
SELECT results_eq($$SELECT actor, action, changes->'email_verified' FROM keen.user_audit_log ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('user', 'confirm_email', '{"old": false, "new": true}'::jsonb)$$, 'the confirmation is audited as the user''s');
SELECT throws_ok($$SELECT keen.start_email_verification(pg_temp.sha('v3'), now() + interval '1 day')$$, 'KE007', NULL,
  'a verified e-mail needs no verification: KE007');
SELECT throws_ok($$SELECT keen.change_email('BOB@example.com', pg_temp.sha('e1'), now() + interval '1 day')$$, 'KE009',
  'already exists: the e-mail address is registered',
  'another user''s e-mail, in any case, raises KE009 without quoting it');
SELECT throws_ok($$SELECT keen.change_email('not-an-email', pg_temp.sha('e1'), now() + interval '1 day')$$, 'KE013', NULL,
  'a malformed e-mail raises KE013');
SELECT throws_ok($$SELECT keen.change_email('x@erased.invalid', pg_temp.sha('e1'), now() + interval '1 day')$$, 'KE013', NULL,
  'the placeholder domain of closed accounts raises KE013');
SELECT throws_ok($$SELECT keen.change_email(repeat('x', 250) || '@example.com', pg_temp.sha('e1'), now() + interval '1 day')$$,
  'KE013', NULL, 'an e-mail over 255 characters raises KE013');
SELECT lives_ok($$SELECT keen.change_email(p_email => 'alice@new.example', p_token_hash => pg_temp.sha('e1'),
                                           p_expires_at => now() + interval '2 days')$$, 'change_email');
SELECT results_eq($$SELECT email, email_verified, email_verification_expires_at IS NOT NULL FROM keen.users$$,
  $$VALUES ('alice@new.example', false, true)$$, 'the new e-mail is the login, unverified, with a pending token');
SELECT results_eq($$SELECT user_id FROM keen.login_lookup('alice@new.example')$$,
  $$VALUES (current_setting('test.alice')::uuid)$$, 'login_lookup finds the user by the new e-mail');
SELECT is_empty($$SELECT user_id FROM keen.login_lookup('alice@example.com')$$, 'the old e-mail no longer logs in');
SELECT results_eq($$SELECT changes->'email', changes->'email_verified' FROM keen.user_audit_log ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('{"old": "alice@example.com", "new": "alice@new.example"}'::jsonb, '{"old": true, "new": false}'::jsonb)$$,
  'the audit row has the old and the new e-mail');

-- ===== as the user: MFA and recovery codes ===================================
SELECT throws_ok($$SELECT keen.enroll_mfa('JBSWY3DPEHPK3PXP', ARRAY[pg_temp.sha('c1')])$$, 'KE013', NULL,
  'a plaintext TOTP secret is refused: KE013');
SELECT throws_ok($$SELECT keen.enroll_mfa('k1:JBSWY3DPEHPK3PXP', ARRAY[pg_temp.sha('c1')])$$, 'KE013', NULL,
  'a key id in front of a bare secret is no ciphertext: KE013');
SELECT throws_ok($$SELECT keen.enroll_mfa(pg_temp.sealed('totp'), ARRAY['code-1', 'code-2'])$$, 'KE013', NULL,
  'plaintext recovery codes are refused: KE013');
SELECT throws_ok($$SELECT keen.enroll_mfa(pg_temp.sealed('totp'), ARRAY[pg_temp.sha('c1'), pg_temp.sha('c1')])$$, 'KE013', NULL,
  'duplicate recovery code hashes raise KE013');
SELECT throws_ok($$SELECT keen.enroll_mfa(pg_temp.sealed('totp'), '{}')$$, 'KE013', NULL, 'no recovery code raises KE013');
SELECT throws_ok($$SELECT keen.enroll_mfa(pg_temp.sealed('totp'), ARRAY(SELECT pg_temp.sha(n::text) FROM generate_series(1, 21) AS n))$$,
  'KE013', NULL, 'more than 20 recovery codes raise KE013');
SELECT throws_ok($$SELECT keen.enable_mfa()$$, 'KE007', NULL, 'enable_mfa before enrolment raises KE007');
SELECT throws_ok($$SELECT keen.disable_mfa()$$, 'KE007', NULL, 'disable_mfa with nothing enrolled raises KE007');
SELECT lives_ok($$SELECT keen.enroll_mfa(p_secret_ciphertext => pg_temp.sealed('totp'),
                                         p_recovery_code_hashes => ARRAY[pg_temp.sha('c1'), pg_temp.sha('c2'), pg_temp.sha('c3')])$$,
  'enroll_mfa stores the ciphertext and the code hashes');
SELECT is((SELECT mfa_enabled FROM keen.users), false, 'an enrolment is pending until enable_mfa');
SELECT is(keen.get_mfa_secret(), pg_temp.sealed('totp'), 'get_mfa_secret hands the ciphertext to the service');
SELECT throws_ok($$SELECT keen.use_recovery_code(pg_temp.sha('c1'))$$, 'KE007', NULL,
  'a recovery code does nothing while MFA is off: KE007');
SELECT lives_ok($$SELECT keen.enable_mfa()$$, 'enable_mfa');
SELECT is((SELECT mfa_enabled FROM keen.users), true, 'MFA is on');
SELECT throws_ok($$SELECT keen.enable_mfa()$$, 'KE007', NULL, 'enable_mfa twice raises KE007');
SELECT throws_ok($$SELECT keen.enroll_mfa(pg_temp.sealed('other'), ARRAY[pg_temp.sha('c9')])$$, 'KE007', NULL,
  'a new enrolment while MFA is on raises KE007');
SELECT is(keen.use_recovery_code(p_code_hash => pg_temp.sha('c2')), 2, 'use_recovery_code returns how many codes are left');
SELECT throws_ok($$SELECT keen.use_recovery_code(pg_temp.sha('c2'))$$, 'KE006', NULL, 'a used code raises KE006');
SELECT throws_ok($$SELECT keen.use_recovery_code(pg_temp.sha('never'))$$, 'KE006', NULL, 'an unknown code raises KE006');
SELECT throws_ok($$SELECT keen.use_recovery_code('c1')$$, 'KE013', NULL, 'a plaintext code raises KE013');
SELECT results_eq($$SELECT action, changes FROM keen.user_audit_log ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('use_recovery_code', '{"recovery_codes": {"changed": true}}'::jsonb)$$,
  'the audit row of a used code names the field, never a hash');
SELECT is_empty(
  $$SELECT id FROM keen.user_audit_log
    WHERE strpos(changes::text, pg_temp.sha('c1')) > 0 OR strpos(changes::text, pg_temp.sha('e1')) > 0
       OR strpos(changes::text, pg_temp.sha('v2')) > 0 OR strpos(changes::text, 'k1:') > 0
       OR strpos(changes::text, repeat('m', 40)) > 0$$,
  'no audit row holds a hash, a ciphertext or a password hash');
SELECT throws_ok($$SELECT mfa_secret FROM keen.users$$, '42501', NULL, 'keen_app cannot read the MFA ciphertext directly');
SELECT throws_ok($$SELECT email_verification_token FROM keen.users$$, '42501', NULL, 'keen_app cannot read the verification hash');

-- ===== as another tenant =====================================================
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.bob'), true); END $$;
SELECT is_empty($$SELECT id FROM keen.user_audit_log WHERE user_id = current_setting('test.alice')::uuid$$,
  'another tenant reads none of the user''s audit rows');
SELECT throws_ok($$SELECT keen.use_recovery_code(pg_temp.sha('c1'))$$, 'KE007', NULL,
  'another tenant cannot spend the user''s code (its own MFA is off)');
SELECT lives_ok($$SELECT keen.update_profile(p_display_name => 'Bob')$$, 'another tenant changes its own profile');
SELECT is(keen.get_mfa_secret(), NULL, 'another tenant gets its own (absent) MFA secret, not the user''s');
RESET ROLE;
SELECT results_eq($$SELECT display_name FROM keen.users WHERE id = current_setting('test.alice')::uuid$$,
  $$VALUES (NULL::text)$$, 'the user''s profile is untouched by the other tenant');
SELECT is((SELECT recovery_codes FROM keen.users WHERE id = current_setting('test.alice')::uuid),
  ARRAY[pg_temp.sha('c1'), pg_temp.sha('c3')], 'the user''s unused codes are intact');
SET LOCAL ROLE keen_app;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.alice'), true); END $$;
SELECT lives_ok($$SELECT keen.disable_mfa()$$, 'disable_mfa');
RESET ROLE;
SELECT results_eq($$SELECT mfa_enabled, mfa_secret, recovery_codes FROM keen.users WHERE id = current_setting('test.alice')::uuid$$,
  $$VALUES (false, NULL::text, NULL::text[])$$, 'disabling MFA forgets the secret and the codes');

-- ===== secrets at rest: the table refuses plaintext, whoever writes =========
SELECT throws_ok($$UPDATE keen.users SET mfa_secret = 'JBSWY3DPEHPK3PXP' WHERE id = current_setting('test.bob')::uuid$$,
  '23514', NULL, 'even the owner cannot store a plaintext MFA secret (users_mfa_secret_check)');
SELECT throws_ok($$UPDATE keen.users SET recovery_codes = ARRAY['abcd-efgh'] WHERE id = current_setting('test.bob')::uuid$$,
  '23514', NULL, 'nor plaintext recovery codes (users_recovery_codes_check)');
SELECT throws_ok($$UPDATE keen.users SET email_verification_token = 'token', email_verification_expires_at = now() + interval '1 day'
                   WHERE id = current_setting('test.bob')::uuid$$,
  '23514', NULL, 'nor a plaintext verification token (users_email_verification_token_check)');
SELECT throws_ok($$UPDATE keen.users SET email_verification_token = pg_temp.sha('t') WHERE id = current_setting('test.bob')::uuid$$,
  '23514', NULL, 'nor a token without expiry (users_email_verification_expires_at_check)');

-- ===== operators and billing =================================================
SELECT throws_ok($$SELECT keen.suspend_user(current_setting('test.alice')::uuid, '')$$, 'KE013', NULL,
  'a suspension needs a reason: KE013');
SELECT throws_ok($$SELECT keen.suspend_user(current_setting('test.alice')::uuid, repeat('r', 501))$$, 'KE013', NULL,
  'a reason over 500 characters raises KE013');
SELECT throws_ok($$SELECT keen.suspend_user(gen_random_uuid(), 'spam')$$, 'KE006', NULL, 'suspending an unknown user raises KE006');
SELECT lives_ok($$SELECT keen.suspend_user(p_user_id => current_setting('test.alice')::uuid, p_reason => 'chargeback')$$,
  'suspend_user');
SELECT results_eq($$SELECT account_status, suspended_reason FROM keen.users WHERE id = current_setting('test.alice')::uuid$$,
  $$VALUES ('suspended', 'chargeback')$$, 'the user is suspended with the reason');
SELECT results_eq($$SELECT actor, action, changes->'account_status', changes->'suspended_reason'
                    FROM keen.user_audit_log WHERE user_id = current_setting('test.alice')::uuid ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('operator', 'suspend_user', '{"old": "active", "new": "suspended"}'::jsonb, '{"old": null, "new": "chargeback"}'::jsonb)$$,
  'the suspension is audited as an operator''s, with the reason');
SELECT throws_ok($$SELECT keen.suspend_user(current_setting('test.alice')::uuid, 'again')$$, 'KE007', NULL,
  'suspending a suspended user raises KE007');
SET LOCAL ROLE keen_app;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.alice'), true); END $$;
SELECT throws_ok($$SELECT keen.update_profile(p_display_name => 'x')$$, 'KE012', NULL, 'a suspended user changes nothing: KE012');
SELECT throws_ok($$SELECT keen.close_account()$$, 'KE012', NULL, 'a suspended user cannot close the account: KE012');
SELECT results_eq($$SELECT account_status FROM keen.login_lookup('alice')$$, $$VALUES ('suspended')$$,
  'login_lookup reports the suspension');
RESET ROLE;
SELECT throws_ok($$SELECT keen.reactivate_user(gen_random_uuid())$$, 'KE006', NULL, 'reactivating an unknown user raises KE006');
SELECT lives_ok($$SELECT keen.reactivate_user(p_user_id => current_setting('test.alice')::uuid)$$, 'reactivate_user');
SELECT results_eq($$SELECT account_status, suspended_reason FROM keen.users WHERE id = current_setting('test.alice')::uuid$$,
  $$VALUES ('active', NULL::text)$$, 'the user is active again and the reason is gone');
SELECT throws_ok($$SELECT keen.reactivate_user(current_setting('test.alice')::uuid)$$, 'KE007', NULL,
  'reactivating an active user raises KE007');
SELECT throws_ok($$SELECT keen.set_user_role(current_setting('test.alice')::uuid, 'root')$$, 'KE013', NULL,
  'an unknown role raises KE013');
SELECT lives_ok($$SELECT keen.set_user_role(p_user_id => current_setting('test.alice')::uuid, p_role => 'admin')$$, 'set_user_role');
SELECT results_eq($$SELECT role, is_admin FROM keen.users WHERE id = current_setting('test.alice')::uuid$$,
  $$VALUES ('admin', true)$$, 'the role is set and is_admin follows');
SELECT results_eq($$SELECT actor, changes->'role' FROM keen.user_audit_log WHERE user_id = current_setting('test.alice')::uuid ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('operator', '{"old": "user", "new": "admin"}'::jsonb)$$, 'the role change is audited as an operator''s');
SELECT throws_ok($$SELECT keen.set_billing(current_setting('test.alice')::uuid, p_subscription_tier => 'gold')$$, 'KE013', NULL,
  'an unknown tier raises KE013');
SELECT throws_ok($$SELECT keen.set_billing(current_setting('test.alice')::uuid, p_subscription_status => 'trial')$$, 'KE013', NULL,
  'an unknown subscription status raises KE013');
SELECT throws_ok($$SELECT keen.set_billing(current_setting('test.alice')::uuid, p_billing_customer_id => 'cus 1')$$, 'KE013', NULL,
  'a malformed billing customer id raises KE013');
SELECT throws_ok($$SELECT keen.set_billing(gen_random_uuid(), 'cus_x')$$, 'KE006', NULL, 'billing an unknown user raises KE006');
SELECT lives_ok($$SELECT keen.set_billing(p_user_id => current_setting('test.alice')::uuid, p_billing_customer_id => 'cus_alice',
                                          p_subscription_tier => 'team')$$, 'set_billing');
SELECT lives_ok($$SELECT keen.set_billing(p_user_id => current_setting('test.alice')::uuid, p_subscription_status => 'past_due')$$,
  'set_billing with one field');
SELECT results_eq($$SELECT billing_customer_id, subscription_tier, subscription_status FROM keen.users WHERE id = current_setting('test.alice')::uuid$$,
  $$VALUES ('cus_alice', 'team', 'past_due')$$, 'NULL leaves the other billing fields as they are');
SELECT results_eq($$SELECT actor, action FROM keen.user_audit_log WHERE user_id = current_setting('test.alice')::uuid ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('billing', 'set_billing')$$, 'billing changes are audited as the billing service''s');
SELECT throws_ok($$SELECT keen.set_billing(current_setting('test.bob')::uuid, 'cus_alice')$$, 'KE009', NULL,
  'a billing customer belongs to one user: KE009');

SELECT is_empty($$SELECT * FROM keen.verify_tenant_lookup()$$,
  'verify_tenant_lookup is empty after the profile, e-mail, verification, MFA, operator and billing flows');
-- ===== the audit trail =======================================================
DO $$ BEGIN PERFORM set_config('test.n', pg_temp.audit_count(current_setting('test.alice'))::text, true); END $$;
SAVEPOINT before_change;
SET LOCAL ROLE keen_app;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.alice'), true); END $$;
DO $$ BEGIN PERFORM keen.update_profile(p_display_name => 'Rolled back'); END $$;
ROLLBACK TO SAVEPOINT before_change;
SELECT is(pg_temp.audit_count(current_setting('test.alice')), current_setting('test.n')::bigint,
  'a rolled-back change leaves no audit row');
SET LOCAL ROLE keen_app;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.alice'), true); END $$;
SELECT throws_ok($$UPDATE keen.users SET last_login_ip = '192.0.2.1'$$, '42501', NULL,
  'keen_app cannot stamp a login directly (since 0009 it writes users only through the functions)');
SELECT lives_ok($$SELECT keen.record_login('192.0.2.1')$$, 'the service stamps a login through keen.record_login');
SELECT results_eq($$SELECT actor, action, changes -> 'last_login_ip', changes ? 'last_login_at'
                    FROM keen.user_audit_log ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('user', 'record_login', '{"old": null, "new": "192.0.2.1"}'::jsonb, true)$$,
  'a login stamp (record_login, a 0009 definer writing users) is audited as the user''s login');
SET LOCAL app.client_ip = 'not-an-address';
SELECT throws_ok($$SELECT keen.update_profile(p_display_name => 'x')$$, 'KE013', NULL,
  'a malformed client address set by hand raises KE013 at the next change, which is not written');
SET LOCAL app.client_ip = '';
SELECT throws_ok($$INSERT INTO keen.user_audit_log (user_id, actor, action, changes, actor_role)
                   VALUES (current_setting('test.alice')::uuid, 'operator', 'forged', '{}', 'x')$$, '42501', NULL,
  'keen_app cannot forge an audit row');
SELECT throws_ok($$UPDATE keen.user_audit_log SET action = 'forged'$$, '42501', NULL, 'keen_app cannot alter an audit row');
SELECT throws_ok($$DELETE FROM keen.user_audit_log$$, '42501', NULL, 'keen_app cannot remove an audit row');
SELECT throws_ok($$TRUNCATE keen.user_audit_log$$, '42501', NULL, 'keen_app cannot empty the audit trail');
RESET ROLE;
SET LOCAL ROLE keen_owner;
DO $$ BEGIN
  PERFORM set_config('test.owner_sees', (SELECT string_agg(DISTINCT user_id::text, ',' ORDER BY user_id::text)
                                         FROM keen.user_audit_log), true);
END $$;
RESET ROLE;
SELECT is(current_setting('test.owner_sees'),
  (SELECT string_agg(u, ',' ORDER BY u) FROM unnest(ARRAY[current_setting('test.alice'), current_setting('test.bob')]) AS u),
  'an operator (keen_owner) reads every user''s audit rows');
SELECT lives_ok($$UPDATE keen.users SET timezone = 'UTC' WHERE id = current_setting('test.alice')::uuid$$,
  'an operator writes a users row directly');
SELECT results_eq($$SELECT actor, action, actor_role FROM keen.user_audit_log WHERE user_id = current_setting('test.alice')::uuid ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('user', 'record_login', session_user::text COLLATE "default")$$,
  'a direct write bypasses the trail (0016: the functions append it, no trigger on users, which on Citus must touch no other table)');
SELECT is(pg_temp.audit_count(current_setting('test.alice')), current_setting('test.n')::bigint + 1,
  'one audit row per change a function made: the login stamp');
SELECT throws_ok($$UPDATE keen.user_audit_log SET action = 'x'$$, '42501', NULL, 'even a superuser acting as itself cannot UPDATE the trail');
SELECT throws_ok($$DELETE FROM keen.user_audit_log WHERE user_id = current_setting('test.alice')::uuid$$, '42501', NULL,
  'nor DELETE a live user''s rows');
SELECT throws_ok($$TRUNCATE keen.user_audit_log$$, '42501', NULL, 'nor TRUNCATE it');
SELECT throws_ok($$UPDATE keen.user_audit_log SET changes = keen.redact_audit_changes(changes), ip = NULL
                   WHERE user_id = current_setting('test.alice')::uuid$$, '42501', NULL,
  'an active user''s trail cannot be redacted');

-- ===== closing an account: erasure ===========================================
DO $$ BEGIN
  PERFORM set_config('test.carol', keen.register_user(
    p_email => 'Carol.Erase@example.com', p_username => 'carol_erase', p_password_hash => repeat('c', 40),
    p_display_name => 'Carol Erase', p_timezone => 'America/New_York')::text, true);
END $$;
SELECT lives_ok($$SELECT keen.set_billing(current_setting('test.carol')::uuid, 'cus_carolerase')$$, 'carol has a billing customer');
SET LOCAL ROLE keen_app;
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', current_setting('test.carol'), true);
  PERFORM keen.set_client_ip('203.0.113.99');
  PERFORM keen.update_profile(p_avatar_url => 'https://img.example/carol-erase.png');
  PERFORM keen.record_login('203.0.113.99');
  PERFORM keen.enroll_mfa(pg_temp.sealed('carol-totp'), ARRAY[pg_temp.sha('carol-code')]);
  PERFORM keen.start_email_verification(pg_temp.sha('carol-verify'), now() + interval '1 day');
  PERFORM keen.create_auth_token(p_token_type => 'api_key', p_token_hash => pg_temp.sha('carol-api'),
                                 p_created_ip => '203.0.113.99', p_user_agent => 'CarolAgent/1.0');
  PERFORM keen.add_credits(p_amount => 50);
  PERFORM keen.deduct_credits(p_amount => 12.5);
  PERFORM keen.start_session(p_session_id => 'carol-s1', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'main');
  PERFORM keen.open_connection(p_connection_id => 'carol-ws', p_client_ip => '203.0.113.99', p_user_agent => 'CarolAgent/1.0');
END $$;
SELECT throws_ok($$SELECT keen.close_account()$$, 'KE007', NULL, 'an account with a running session cannot close: KE007');
DO $$ BEGIN PERFORM keen.complete_session(p_session_id => 'carol-s1', p_success => true, p_total_cost => 2.5); END $$;
SET CONSTRAINTS ALL IMMEDIATE;  -- the deferred session counters land now, as at a commit
DO $$ BEGIN PERFORM set_config('test.hold', (keen.hold_credits(p_amount => 1)).id::text, true); END $$;
SELECT throws_ok($$SELECT keen.close_account()$$, 'KE007', NULL, 'an account with an active hold cannot close: KE007');
DO $$ BEGIN PERFORM keen.release_hold(current_setting('test.hold')::uuid); END $$;
SELECT is((SELECT current_balance FROM keen.credit_accounts), 35.0000::numeric, 'carol''s balance before closing');
RESET ROLE;
SELECT set_eq(
  $$SELECT split_part(r.r, ':', 1) FROM pg_temp.rows_mentioning(ARRAY['carol.erase@example.com', '203.0.113.99', 'CarolAgent', 'cus_carolerase']) AS r (r)$$,
  ARRAY['keen.auth_tokens', 'keen.tenant_lookup', 'keen.user_audit_log', 'keen.users', 'keen.websocket_connections'],
  'before closing, the scan below finds carol''s data where it is (so it can fail)');
SET LOCAL ROLE keen_app;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.carol'), true); END $$;
SELECT lives_ok($$SELECT keen.close_account()$$, 'close_account');
SELECT throws_ok($$SELECT keen.close_account()$$, 'KE012', NULL, 'a closed account cannot close again: KE012');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 1)$$, 'KE012', NULL, 'a closed account receives no credits: KE012');
SELECT is_empty($$SELECT user_id FROM keen.authenticate_token(pg_temp.sha('carol-api'))$$, 'carol''s tokens authenticate nothing');
RESET ROLE;
SELECT is_empty(
  $$SELECT * FROM pg_temp.rows_mentioning(ARRAY['carol.erase@example.com', 'carol_erase', 'Carol Erase',
      'carol-erase.png', '203.0.113.99', 'CarolAgent', 'cus_carolerase', pg_temp.sealed('carol-totp'),
      pg_temp.sha('carol-code'), pg_temp.sha('carol-verify'), pg_temp.sha('carol-api'), repeat('c', 40)])$$,
  'after closing, no table holds carol''s e-mail, username, name, avatar, addresses, user agent, billing id or any secret');
SELECT results_eq(
  $$SELECT account_status, subscription_status, email_verified, mfa_enabled FROM keen.users WHERE id = current_setting('test.carol')::uuid$$,
  $$VALUES ('deleted', 'cancelled', false, false)$$, 'the user row remains, closed');
SELECT is((SELECT account_status FROM keen.credit_accounts WHERE user_id = current_setting('test.carol')::uuid), 'closed',
  'the credit account is closed');
SELECT is_empty($$SELECT * FROM keen.verify_ledger()$$, 'verify_ledger is empty after the erasure');
SELECT is_empty($$SELECT * FROM keen.verify_usage_stats()$$, 'verify_usage_stats is empty after the erasure');
SELECT is_empty($$SELECT * FROM keen.verify_tenant_lookup()$$, 'verify_tenant_lookup is empty after the erasure: carol''s values are free');
SELECT results_eq(
  $$SELECT sum(t.amount), min(a.current_balance), count(*) FROM keen.credit_transactions AS t
      JOIN keen.credit_accounts AS a ON a.id = t.account_id WHERE t.user_id = current_setting('test.carol')::uuid$$,
  $$VALUES (35.0000::numeric, 35.0000::numeric, 3::bigint)$$,
  'the ledger history is intact and still sums to the balance carol had');
SELECT is((SELECT sum(sessions_completed)::integer FROM keen.daily_usage_stats WHERE user_id = current_setting('test.carol')::uuid), 1,
  'the usage statistics are intact');
SELECT results_eq(
  $$SELECT action FROM keen.user_audit_log WHERE user_id = current_setting('test.carol')::uuid ORDER BY id$$,
  $$VALUES ('register_user'), ('set_billing'), ('update_profile'), ('record_login'), ('enroll_mfa'),
           ('start_email_verification'), ('close_account')$$,
  'the trail keeps one row per change of the closed account');
SELECT results_eq(
  $$SELECT changes->'email', changes->'account_status', ip FROM keen.user_audit_log
     WHERE user_id = current_setting('test.carol')::uuid AND action = 'close_account'$$,
  $$VALUES ('{"erased": true}'::jsonb, '{"old": "active", "new": "deleted"}'::jsonb, NULL::inet)$$,
  'personal values are erased from the trail; the status change stays');
SELECT is_empty($$SELECT * FROM keen.login_lookup('carol_erase')$$, 'the old username logs in as nobody');
SELECT lives_ok($$SELECT keen.register_user('carol.erase@example.com', 'Carol_Erase', repeat('d', 40))$$,
  'the e-mail and the username are free again');
SELECT throws_ok($$SELECT keen.suspend_user(current_setting('test.carol')::uuid, 'x')$$, 'KE007', NULL,
  'operators cannot change a closed account: KE007');
SELECT throws_ok($$SELECT keen.set_billing(current_setting('test.carol')::uuid, 'cus_new')$$, 'KE007', NULL,
  'billing cannot change a closed account: KE007');
SELECT throws_ok($$INSERT INTO keen.users (email, username, password_hash)
                   VALUES ('x@erased.invalid', 'squatter', repeat('s', 40))$$, '23514', NULL,
  'nobody can hold a closed account''s placeholder e-mail (users_erased_identity_check)');
SELECT throws_ok($$UPDATE keen.user_audit_log SET action = 'x' WHERE user_id = current_setting('test.carol')::uuid$$,
  '42501', NULL, 'a closed account''s trail is still append-only beyond its erasure');
SELECT lives_ok($$UPDATE keen.user_audit_log SET changes = keen.redact_audit_changes(changes), ip = NULL
                  WHERE user_id = current_setting('test.carol')::uuid$$,
  'redacting a closed account''s trail again is allowed and changes nothing');

-- ===== bounded text (rule 6 of docs/security.md) ===============================
-- Every free-text argument of the account functions is bounded at the call: a megabyte
-- raises KE013 with a short message quoting at most 24 characters, never a raw error.
CREATE FUNCTION pg_temp.error_of(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE p_sql;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;
DO $$ BEGIN PERFORM set_config('test.big', repeat('x', 1000000), true); END $$;
DO $$ BEGIN PERFORM set_config('app.current_user_id', current_setting('test.bob'), true); END $$;
SELECT is_empty(
  $$SELECT c, left(e, 80) FROM unnest(ARRAY[
      'SELECT keen.update_profile(p_display_name => current_setting(''test.big''))',
      'SELECT keen.update_profile(p_avatar_url => ''https://'' || current_setting(''test.big''))',
      'SELECT keen.update_profile(p_timezone => current_setting(''test.big''))',
      'SELECT keen.update_profile(p_preferences => jsonb_build_object(''x'', current_setting(''test.big'')))',
      'SELECT keen.change_password(current_setting(''test.big''))',
      'SELECT keen.start_email_verification(current_setting(''test.big''), now() + interval ''1 day'')',
      'SELECT keen.confirm_email(current_setting(''test.big''))',
      'SELECT keen.change_email(current_setting(''test.big'') || ''@example.com'', pg_temp.sha(''big''), now() + interval ''1 day'')',
      'SELECT keen.change_email(''big@example.com'', current_setting(''test.big''), now() + interval ''1 day'')',
      'SELECT keen.enroll_mfa(''k:'' || current_setting(''test.big''), ARRAY[pg_temp.sha(''c'')])',
      'SELECT keen.enroll_mfa(pg_temp.sealed(''s''), ARRAY[current_setting(''test.big'')])',
      'SELECT keen.use_recovery_code(current_setting(''test.big''))',
      'SELECT keen.suspend_user(current_setting(''test.bob'')::uuid, current_setting(''test.big''))',
      'SELECT keen.set_user_role(current_setting(''test.bob'')::uuid, current_setting(''test.big''))',
      'SELECT keen.set_billing(current_setting(''test.bob'')::uuid, current_setting(''test.big''))',
      'SELECT keen.set_billing(current_setting(''test.bob'')::uuid, NULL, current_setting(''test.big''))',
      'SELECT keen.set_billing(current_setting(''test.bob'')::uuid, NULL, NULL, current_setting(''test.big''))'
    ]) AS c, pg_temp.error_of(c) AS e
    WHERE e !~ '^KE013 .{0,200}$' OR e ~ 'x{25}'$$,
  'a megabyte in any text argument of an account function raises KE013, quoting at most 24 characters');

SELECT * FROM finish();
ROLLBACK;
