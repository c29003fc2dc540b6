-- Users, tokens and accounts on a distributed Citus cluster (issue 19): every public function
-- of the area, called in the tenant context keen_sql sends (role by set_config, the tenant by
-- SET LOCAL, which Citus propagates to the workers), on the migrated and distributed database.
-- Run: PGOPTIONS='-c search_path=tap,public' pg_prove -d DB -h HOST -p PORT -U postgres tests_citus/10_users.sql
\set ON_ERROR_STOP 1
-- The tenant and operator roles call pgTAP's functions (committed first: on Citus a grant made
-- inside the transaction is not yet visible to the workers' other connections).
GRANT USAGE ON SCHEMA tap TO keen_app, keen_owner;
BEGIN;
SELECT plan(60);
CREATE FUNCTION pg_temp.sha(p text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT encode(sha256(convert_to(p, 'UTF8')), 'hex') $$;
CREATE FUNCTION pg_temp.sealed(p text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT 'k1:' || encode(sha256(convert_to(p, 'UTF8')), 'base64') $$;

SELECT is((SELECT count(*)::int FROM pg_dist_partition
            WHERE logicalrelid IN ('keen.users'::regclass, 'keen.auth_tokens'::regclass,
                                   'keen.user_audit_log'::regclass, 'keen.tenant_lookup'::regclass)
              AND partmethod = 'h'), 4,
  'users, auth_tokens, user_audit_log and tenant_lookup are hash-distributed');
SELECT is((SELECT column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition
            WHERE logicalrelid = 'keen.tenant_lookup'::regclass), 'value', 'tenant_lookup is distributed by value');

-- ===== sign-up (no tenant) ===================================================
SELECT keen.register_user('Alice@Example.com', 'alice', repeat('a', 40), 'Alice', 'Europe/Paris') AS alice \gset
SELECT keen.register_user('bob@example.com', 'bob', repeat('b', 40)) AS bob \gset
SELECT isnt(:'alice'::uuid, NULL, 'register_user returns the new user''s id');
SELECT throws_ok($$SELECT keen.register_user('ALICE@example.COM', 'alice2', repeat('a', 40))$$,
  'KE009', 'already exists: the e-mail address is registered', 'a taken e-mail (any case) is KE009');
SELECT throws_ok($$SELECT keen.register_user('alice2@example.com', 'ALICE', repeat('a', 40))$$,
  'KE009', 'already exists: the username is taken', 'a taken username (any case) is KE009');
SELECT throws_ok($$SELECT keen.register_user('x@example.com', 'xuser', repeat('a', 40), NULL, 'Mars/Olympus')$$,
  'KE013', NULL, 'an unknown time zone is KE013');
SELECT set_config('role', 'keen_owner', true);
SELECT is_empty($$SELECT * FROM keen.verify_tenant_lookup()$$, 'verify_tenant_lookup is empty after the sign-ups');

-- ===== login, step 1 (no tenant) =============================================
SELECT results_eq($$SELECT user_id, account_status FROM keen.login_lookup('ALICE@EXAMPLE.COM')$$,
  format('VALUES (%L::uuid, %L::text)', :'alice', 'active'), 'login_lookup by e-mail, any case');
SELECT results_eq($$SELECT user_id FROM keen.login_lookup('Bob')$$,
  format('VALUES (%L::uuid)', :'bob'), 'login_lookup by username, any case');
SELECT is_empty($$SELECT * FROM keen.login_lookup('nobody@example.com')$$, 'login_lookup of an unknown login: no row');

-- ===== the attacker: keen_app reads no lookup ================================
SELECT set_config('role', 'keen_app', true);
SET LOCAL app.current_user_id = :'alice';
SELECT throws_ok($$SELECT value FROM keen.tenant_lookup$$, '42501', NULL,
  'keen_app cannot read keen.tenant_lookup (no e-mail enumeration)');
SELECT throws_ok($$SELECT keen.verify_tenant_lookup()$$, '42501', NULL, 'nor run the operator check');

-- ===== alice's account, in her tenant context ================================
SELECT lives_ok($$SELECT keen.set_client_ip('192.0.2.10')$$, 'set_client_ip');
SELECT isnt(keen.record_login('192.0.2.10'), NULL, 'record_login');
SELECT lives_ok($$SELECT keen.update_profile(p_display_name => 'Alice A.')$$, 'update_profile');
SELECT lives_ok($$SELECT keen.update_profile(p_timezone => 'America/New_York')$$,
  'update_profile with a new time zone rebuilds the usage statistics');
SELECT set_config('role', 'keen_owner', true);
SELECT results_eq(format('SELECT display_name FROM keen.users WHERE id = %L', :'alice'), $$VALUES ('Alice A.'::text)$$,
  'the profile changed');
SELECT set_config('role', 'keen_app', true);
SELECT throws_ok($$SELECT keen.update_profile(p_timezone => 'Mars/Olympus')$$, 'KE013', NULL, 'update_profile: bad zone KE013');
SELECT (keen.create_auth_token('jwt_refresh', pg_temp.sha('alice-refresh-1'), 'cli', ARRAY['read'], now() + interval '1 day')).id IS NOT NULL AS made \gset
SELECT ok(:'made', 'create_auth_token (a refresh token)');
SELECT (keen.create_auth_token('api_key', pg_temp.sha('alice-api'), 'api')).id AS alice_api \gset
SELECT throws_ok(format('SELECT keen.create_auth_token(%L, %L)', 'api_key', pg_temp.sha('alice-api')), 'KE009', NULL,
  'a token hash already stored is KE009');
SELECT results_eq($$SELECT user_id, token_type, rate_limited FROM keen.authenticate_token(pg_temp.sha('alice-api'), '192.0.2.10')$$,
  format('VALUES (%L::uuid, %L::text, false)', :'alice', 'api_key'), 'authenticate_token finds the tenant through the lookup');
SELECT set_config('role', 'keen_owner', true);
SELECT results_eq(format('SELECT usage_count FROM keen.auth_tokens WHERE user_id = %L AND id = %L', :'alice', :'alice_api'),
  $$VALUES (1::bigint)$$, 'the use is counted');
SELECT set_config('role', 'keen_app', true);
SELECT is_empty($$SELECT * FROM keen.authenticate_token(pg_temp.sha('no-such-token'))$$, 'an unknown token authenticates nothing');
SELECT (keen.rotate_refresh_token(pg_temp.sha('alice-refresh-1'), pg_temp.sha('alice-refresh-2'), now() + interval '1 day')).family_id AS family \gset
SELECT set_config('role', 'keen_owner', true);
SELECT results_eq(format('SELECT revoked_reason FROM keen.auth_tokens WHERE user_id = %L AND token_hash = %L', :'alice', pg_temp.sha('alice-refresh-1')),
  $$VALUES ('rotated'::text)$$,
  'rotate_refresh_token revokes the old token');
SELECT set_config('role', 'keen_app', true);
SELECT throws_ok(format('SELECT keen.rotate_refresh_token(%L, %L, now() + interval ''1 day'')', pg_temp.sha('alice-refresh-1'), pg_temp.sha('alice-refresh-3')),
  'KE011', NULL, 'rotating a rotated token again is KE011');
SELECT is_empty($$SELECT * FROM keen.authenticate_token(pg_temp.sha('alice-refresh-1'))$$, 'a replayed rotated token authenticates nothing…');
SELECT set_config('role', 'keen_owner', true);
SELECT results_eq(format('SELECT count(*)::int FROM keen.auth_tokens WHERE user_id = %L AND family_id = %L AND revoked_reason = %L', :'alice', :'family', 'reuse_detected'),
  $$VALUES (1)$$,
  '…and revokes its family');
SELECT set_config('role', 'keen_app', true);
SELECT is((keen.revoke_token(:'alice_api')).revoked_reason, 'revoked', 'revoke_token');
SELECT lives_ok(format('SELECT keen.start_email_verification(%L, now() + interval ''1 day'')', pg_temp.sha('alice-verify-1')),
  'start_email_verification');
SELECT lives_ok(format('SELECT keen.start_email_verification(%L, now() + interval ''1 day'')', pg_temp.sha('alice-verify-2')),
  'a second verification replaces the first');
SELECT lives_ok($$SELECT keen.enroll_mfa(pg_temp.sealed('alice-totp'), ARRAY[pg_temp.sha('code-1'), pg_temp.sha('code-2')])$$, 'enroll_mfa');
SELECT lives_ok($$SELECT keen.enable_mfa()$$, 'enable_mfa');
SELECT is(keen.get_mfa_secret(), pg_temp.sealed('alice-totp'), 'get_mfa_secret');
SELECT is(keen.use_recovery_code(pg_temp.sha('code-1')), 1, 'use_recovery_code: one left');
SELECT throws_ok($$SELECT keen.use_recovery_code(pg_temp.sha('code-1'))$$, 'KE006', NULL, 'a used code is KE006');
SELECT lives_ok($$SELECT keen.disable_mfa()$$, 'disable_mfa');
SELECT lives_ok(format('SELECT keen.create_auth_token(%L, %L)', 'session', pg_temp.sha('alice-session')), 'a session token');
SELECT is(keen.change_password(repeat('n', 40)), 1, 'change_password revokes the active token (the session token)');

-- ===== e-mail confirmation (no tenant) =======================================
SELECT set_config('role', 'keen_app', true);
SET LOCAL app.current_user_id = '';
SELECT throws_ok(format('SELECT keen.confirm_email(%L)', pg_temp.sha('alice-verify-1')), 'KE006', NULL,
  'the replaced verification token confirms nothing');
SELECT is(keen.confirm_email(pg_temp.sha('alice-verify-2')), :'alice'::uuid, 'confirm_email finds the user through the lookup');
SELECT throws_ok(format('SELECT keen.confirm_email(%L)', pg_temp.sha('alice-verify-2')), 'KE006', NULL, 'a token confirms once');

-- ===== change_email (tenant) =================================================
SET LOCAL app.current_user_id = :'alice';
SELECT throws_ok(format('SELECT keen.change_email(%L, %L, now() + interval ''1 day'')', 'BOB@example.com', pg_temp.sha('alice-verify-3')),
  'KE009', 'already exists: the e-mail address is registered', 'change_email to bob''s address is KE009');
SELECT lives_ok(format('SELECT keen.change_email(%L, %L, now() + interval ''1 day'')', 'alice.new@example.com', pg_temp.sha('alice-verify-3')),
  'change_email');
SELECT set_config('role', 'keen_owner', true);
SELECT is_empty($$SELECT * FROM keen.login_lookup('alice@example.com')$$, 'the old address is free');
SELECT results_eq($$SELECT user_id, email_verified FROM keen.login_lookup('Alice.New@example.com')$$,
  format('VALUES (%L::uuid, false)', :'alice'), 'the new address logs in, unverified');

-- ===== operators and billing (keen_owner's functions, as an operator) ========
SELECT lives_ok(format('SELECT keen.suspend_user(%L, %L)', :'bob', 'chargeback'), 'suspend_user');
SELECT results_eq(format('SELECT account_status FROM keen.users WHERE id = %L', :'bob'), $$VALUES ('suspended'::text)$$, 'bob is suspended');
SELECT lives_ok(format('SELECT keen.reactivate_user(%L)', :'bob'), 'reactivate_user');
SELECT lives_ok(format('SELECT keen.set_user_role(%L, %L)', :'bob', 'admin'), 'set_user_role');
SELECT lives_ok(format('SELECT keen.set_billing(%L, %L, %L)', :'alice', 'cus_alice', 'team'), 'set_billing');
SELECT throws_ok(format('SELECT keen.set_billing(%L, %L)', :'bob', 'cus_alice'), 'KE009', NULL,
  'a billing customer is one user''s: KE009');
SELECT results_eq(format('SELECT actor, action FROM keen.user_audit_log WHERE user_id = %L ORDER BY id', :'bob'),
  $$VALUES ('user', 'register_user'), ('operator', 'suspend_user'), ('operator', 'reactivate_user'), ('operator', 'set_user_role')$$,
  'the audit trail records every change the functions made, in order');
SELECT is_empty($$SELECT * FROM keen.verify_tenant_lookup()$$, 'verify_tenant_lookup is empty after the account flows');

-- ===== close_account (tenant): erasure =======================================
SELECT set_config('role', 'keen_app', true);
SET LOCAL app.current_user_id = :'alice';
SELECT lives_ok($$SELECT keen.close_account()$$, 'close_account');
SELECT set_config('role', 'keen_owner', true);
SELECT results_eq(format('SELECT account_status FROM keen.users WHERE id = %L', :'alice'), $$VALUES ('deleted'::text)$$, 'alice is closed');
SELECT is_empty($$SELECT * FROM keen.login_lookup('alice.new@example.com')$$, 'her e-mail logs in no more');
-- all tenants: a test's scan of the lookup
SELECT is_empty(format('SELECT * FROM keen.tenant_lookup WHERE user_id = %L', :'alice'), 'no lookup value is hers any more');
SELECT is_empty(format('SELECT * FROM keen.user_audit_log WHERE user_id = %L AND (changes::text ~ %L OR ip IS NOT NULL)', :'alice', 'alice'),
  'her trail holds no personal value (the erasure passed the guard on the workers)');
SELECT isnt(keen.register_user('alice.new@example.com', 'alice', repeat('a', 40)), NULL,
  'her e-mail and username are free for a new sign-up');
SELECT is_empty($$SELECT * FROM keen.verify_tenant_lookup()$$, 'verify_tenant_lookup is empty after the erasure and the new sign-up');

SELECT * FROM finish();
ROLLBACK;
