-- Users and tokens: sign-up, login lookup, token creation, authentication with rate limit,
-- refresh-token rotation with reuse detection, revocation.
BEGIN;
SELECT plan(83);

-- pgTAP itself must be callable while acting as keen_app (rolled back with the test).
GRANT USAGE ON SCHEMA tap TO keen_app;

-- ===== structure =============================================================
SELECT has_function('keen', 'register_user', ARRAY['text', 'text', 'text', 'text', 'text'], 'register_user exists');
SELECT has_function('keen', 'login_lookup', ARRAY['text'], 'login_lookup exists');
SELECT has_function('keen', 'record_login', ARRAY['inet'], 'record_login exists');
SELECT has_function('keen', 'create_auth_token',
  ARRAY['text', 'text', 'text', 'text[]', 'timestamp with time zone', 'integer', 'inet', 'text'],
  'create_auth_token exists');
SELECT has_function('keen', 'authenticate_token', ARRAY['text', 'inet'], 'authenticate_token exists');
SELECT has_function('keen', 'rotate_refresh_token',
  ARRAY['text', 'text', 'timestamp with time zone', 'inet', 'text'], 'rotate_refresh_token exists');
SELECT has_function('keen', 'revoke_token', ARRAY['uuid'], 'revoke_token exists');
SELECT is_definer('keen', 'register_user', ARRAY['text', 'text', 'text', 'text', 'text'],
  'register_user is SECURITY DEFINER (sign-up has no tenant yet)');
SELECT is_definer('keen', 'login_lookup', ARRAY['text'], 'login_lookup is SECURITY DEFINER (login has no tenant yet)');
SELECT is_definer('keen', 'authenticate_token', ARRAY['text', 'inet'],
  'authenticate_token is SECURITY DEFINER (a token is presented without tenant)');
SELECT is_definer('keen', 'create_auth_token',
  ARRAY['text', 'text', 'text', 'text[]', 'timestamp with time zone', 'integer', 'inet', 'text'],
  'create_auth_token is SECURITY DEFINER: keen_app writes tokens only through it, for its own tenant');
SELECT is_definer('keen', 'rotate_refresh_token',
  ARRAY['text', 'text', 'timestamp with time zone', 'inet', 'text'],
  'rotate_refresh_token is SECURITY DEFINER: keen_app writes tokens only through it, for its own tenant');
SELECT is_definer('keen', 'revoke_token', ARRAY['uuid'],
  'revoke_token is SECURITY DEFINER: keen_app writes tokens only through it, for its own tenant');
SELECT is_definer('keen', 'record_login', ARRAY['inet'],
  'record_login is SECURITY DEFINER: keen_app writes its user row only through it');
SELECT is(pg_catalog.pg_get_function_result('keen.login_lookup(text)'::regprocedure),
  'TABLE(user_id uuid, password_hash text, mfa_enabled boolean, account_status text, email_verified boolean)',
  'login_lookup returns only what a login needs');
SELECT is(pg_catalog.pg_get_function_result('keen.authenticate_token(text, inet)'::regprocedure),
  'TABLE(user_id uuid, token_id uuid, token_type text, scopes text[], rate_limited boolean)',
  'authenticate_token returns only what a request needs');

-- ===== fixtures ==============================================================
DO $$ BEGIN
  PERFORM set_config('test.alice', keen.register_user(
    p_email => 'Alice@Example.com', p_username => 'alice', p_password_hash => repeat('h', 40),
    p_display_name => 'Alice', p_timezone => 'Europe/Paris')::text, true);
END $$;
DO $$ BEGIN
  PERFORM set_config('test.bob', keen.register_user(
    p_email => 'bob@example.com', p_username => 'bob', p_password_hash => repeat('b', 40))::text, true);
END $$;
CREATE FUNCTION tap.sha(p_token text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT encode(sha256(convert_to(p_token, 'UTF8')), 'hex') $$;
GRANT EXECUTE ON FUNCTION tap.sha(text) TO keen_app;

-- ===== sign-up and login lookup (no tenant needed) ===========================
SELECT is((SELECT count(*) FROM keen.credit_accounts WHERE user_id = current_setting('test.alice')::uuid), 1::bigint,
  'register_user opens exactly one credit account for the new user');
SELECT is((SELECT timezone FROM keen.users WHERE id = current_setting('test.alice')::uuid), 'Europe/Paris',
  'register_user stores the time zone');
SELECT throws_ok($$SELECT keen.register_user('ALICE@example.COM', 'alice2', repeat('h', 40))$$, 'KE009', NULL,
  'the same e-mail in another case is refused with KE009');
SELECT throws_ok($$SELECT keen.register_user('alice2@example.com', 'ALICE', repeat('h', 40))$$, 'KE009', NULL,
  'the same username in another case is refused with KE009');
SELECT throws_ok($$SELECT keen.register_user('c@example.com', 'carol', repeat('h', 40), NULL, 'Mars/Olympus')$$,
  'KE013', NULL, 'an unknown time zone is refused with KE013');
SELECT throws_ok($$SELECT keen.register_user('c@example.com', 'carol', repeat('h', 40), NULL, 'UTC+5')$$,
  'KE013', NULL, 'a POSIX offset is not a time zone name: KE013');
SELECT throws_ok($$SELECT keen.register_user('not-an-email', 'carol', repeat('h', 40))$$,
  'KE013', NULL, 'a malformed e-mail is refused with KE013');
SELECT throws_ok($$SELECT keen.register_user('c@example.com', 'x', repeat('h', 40))$$,
  'KE013', NULL, 'a too short username is refused with KE013');
SELECT is((SELECT count(*) FROM keen.users), 2::bigint, 'refused sign-ups leave no user behind');

SET LOCAL ROLE keen_app;
SELECT results_eq(
  $$SELECT user_id, password_hash FROM keen.login_lookup('alice@EXAMPLE.com')$$,
  $$VALUES (current_setting('test.alice')::uuid, repeat('h', 40))$$,
  'login_lookup finds a user by e-mail in any case, without tenant context');
SELECT results_eq(
  $$SELECT user_id, account_status, mfa_enabled, email_verified FROM keen.login_lookup('BOB')$$,
  $$VALUES (current_setting('test.bob')::uuid, 'active', false, false)$$,
  'login_lookup finds a user by username in any case');
SELECT is_empty($$SELECT * FROM keen.login_lookup('nobody')$$, 'login_lookup of an unknown login returns no row');
SELECT is_empty($$SELECT id FROM keen.users$$, 'without tenant context keen_app sees no user row');
SELECT throws_ok($$SELECT password_hash FROM keen.users$$, '42501', NULL,
  'keen_app cannot read password hashes, not even its own');
SELECT throws_ok($$SELECT mfa_secret, recovery_codes FROM keen.users$$, '42501', NULL,
  'keen_app cannot read MFA secrets or recovery codes');
SELECT throws_ok($$INSERT INTO keen.users (email, username, password_hash) VALUES ('x@y.z', 'xyz', repeat('h', 40))$$,
  '42501', NULL, 'keen_app cannot insert users directly: only register_user signs up');

-- ===== without tenant context ================================================
SELECT throws_ok($$SELECT keen.create_auth_token('api_key', tap.sha('k'))$$, 'KE010', NULL,
  'create_auth_token without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.revoke_token(gen_random_uuid())$$, 'KE010', NULL,
  'revoke_token without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.rotate_refresh_token(tap.sha('r'), tap.sha('r2'), now() + interval '1 day')$$,
  'KE010', NULL, 'rotate_refresh_token without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.record_login('10.0.0.1')$$, 'KE010', NULL,
  'record_login without tenant context raises KE010');

-- ===== as the owner ==========================================================
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', current_setting('test.alice'), true);
END $$;
SELECT is((SELECT email FROM keen.users), 'Alice@Example.com', 'a tenant reads its own user row');
SELECT isnt(keen.record_login('192.0.2.7'), NULL, 'record_login stamps the login');
SELECT is((SELECT last_login_ip FROM keen.users), '192.0.2.7'::inet, 'record_login stores the IP');
SELECT throws_ok($$UPDATE keen.users SET account_status = 'active'$$, '42501', NULL,
  'keen_app can change no user column but the login stamps');

DO $$ BEGIN
  PERFORM set_config('test.api', (keen.create_auth_token(
    p_token_type => 'api_key', p_token_hash => tap.sha('api-1'), p_token_name => 'ci',
    p_scopes => '{read,write}', p_rate_limit_per_hour => 2, p_created_ip => '198.51.100.1')).id::text, true);
END $$;
SELECT results_eq(
  $$SELECT user_id, token_type, family_id, is_active, usage_count FROM keen.auth_tokens WHERE id = current_setting('test.api')::uuid$$,
  $$VALUES (current_setting('test.alice')::uuid, 'api_key', NULL::uuid, true, 0::bigint)$$,
  'create_auth_token stores an active api_key of the caller without family');
DO $$ BEGIN
  PERFORM set_config('test.refresh', (keen.create_auth_token(
    p_token_type => 'jwt_refresh', p_token_hash => tap.sha('refresh-1'),
    p_expires_at => now() + interval '30 days')).id::text, true);
END $$;
SELECT isnt((SELECT family_id FROM keen.auth_tokens WHERE id = current_setting('test.refresh')::uuid), NULL,
  'a new refresh token starts a family');
SELECT throws_ok($$SELECT keen.create_auth_token('password', tap.sha('x'))$$, 'KE013', NULL,
  'an unknown token type is refused with KE013');
SELECT throws_ok($$SELECT keen.create_auth_token('api_key', 'plaintext-token')$$, 'KE013', NULL,
  'a token that is not a SHA-256 hex hash is refused with KE013');
SELECT throws_ok($$SELECT keen.create_auth_token('api_key', tap.sha('x'), p_expires_at => now() - interval '1 second')$$,
  'KE013', NULL, 'an expiry in the past is refused with KE013');
SELECT throws_ok($$SELECT keen.create_auth_token('api_key', tap.sha('x'), p_rate_limit_per_hour => 0)$$,
  'KE013', NULL, 'a rate limit of zero is refused with KE013');
SELECT throws_ok($$SELECT keen.create_auth_token('api_key', tap.sha('api-1'))$$, 'KE009', NULL,
  'a token hash that exists already is refused with KE009');

-- authentication runs as the service without tenant
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', '', true);
END $$;
SELECT results_eq(
  $$SELECT user_id, token_id, token_type, scopes, rate_limited FROM keen.authenticate_token(tap.sha('api-1'), '203.0.113.9')$$,
  $$VALUES (current_setting('test.alice')::uuid, current_setting('test.api')::uuid, 'api_key', '{read,write}'::text[], false)$$,
  'authenticate_token returns the user, token, type and scopes of a valid token');
SELECT is((SELECT rate_limited FROM keen.authenticate_token(tap.sha('api-1'), '203.0.113.10')), false,
  'the second use within the hour is within a limit of 2');
SELECT is((SELECT rate_limited FROM keen.authenticate_token(tap.sha('api-1'), '203.0.113.11')), true,
  'the third use within the hour is over a limit of 2: rate_limited');
SELECT is_empty($$SELECT * FROM keen.authenticate_token(tap.sha('never-issued'))$$,
  'an unknown token authenticates nothing');
RESET ROLE;
SELECT results_eq(
  $$SELECT usage_count, rate_window_count, last_used_ip FROM keen.auth_tokens WHERE id = current_setting('test.api')::uuid$$,
  $$VALUES (2::bigint, 2, '203.0.113.10'::inet)$$,
  'authenticate_token counts accepted uses and the last IP; a refused use is not counted');
UPDATE keen.auth_tokens SET rate_window_start = now() - interval '61 minutes'
WHERE id = current_setting('test.api')::uuid;
SELECT is((SELECT rate_limited FROM keen.authenticate_token(tap.sha('api-1'))), false,
  'a new hourly window resets the rate limit');
SELECT is((SELECT rate_window_count FROM keen.auth_tokens WHERE id = current_setting('test.api')::uuid), 1,
  'the new window counts from one');
WITH t AS (
  INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, expires_at, created_at)
  VALUES (current_setting('test.alice')::uuid, 'api_key', tap.sha('expired'), now() - interval '1 hour',
          now() - interval '2 hours')
  RETURNING id, user_id, token_hash)
INSERT INTO keen.tenant_lookup (kind, value, user_id, token_id) SELECT 'auth_token', t.token_hash, t.user_id, t.id FROM t;
SELECT is_empty($$SELECT * FROM keen.authenticate_token(tap.sha('expired'))$$,
  'an expired token authenticates nothing');
UPDATE keen.users SET account_status = 'suspended' WHERE id = current_setting('test.bob')::uuid;
WITH t AS (
  INSERT INTO keen.auth_tokens (user_id, token_type, token_hash)
  VALUES (current_setting('test.bob')::uuid, 'api_key', tap.sha('bob-api'))
  RETURNING id, user_id, token_hash)
INSERT INTO keen.tenant_lookup (kind, value, user_id, token_id) SELECT 'auth_token', t.token_hash, t.user_id, t.id FROM t;
SELECT is_empty($$SELECT * FROM keen.authenticate_token(tap.sha('bob-api'))$$,
  'a token of a suspended user authenticates nothing');
SET LOCAL ROLE keen_app;
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', current_setting('test.bob'), true);
END $$;
SELECT throws_ok($$SELECT keen.create_auth_token('api_key', tap.sha('bob-2'))$$, 'KE012', NULL,
  'a suspended user cannot create tokens: KE012');
RESET ROLE;
UPDATE keen.users SET account_status = 'active' WHERE id = current_setting('test.bob')::uuid;

-- refresh-token rotation
SET LOCAL ROLE keen_app;
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', current_setting('test.alice'), true);
END $$;
DO $$ BEGIN
  PERFORM set_config('test.refresh2', (keen.rotate_refresh_token(
    p_token_hash => tap.sha('refresh-1'), p_new_token_hash => tap.sha('refresh-2'),
    p_expires_at => now() + interval '30 days', p_ip => '198.51.100.2')).id::text, true);
END $$;
SELECT results_eq(
  $$SELECT revoked_reason, replaced_by FROM keen.auth_tokens WHERE id = current_setting('test.refresh')::uuid$$,
  $$VALUES ('rotated', current_setting('test.refresh2')::uuid)$$,
  'rotation revokes the old refresh token and points it at its successor');
SELECT is((SELECT count(DISTINCT family_id) FROM keen.auth_tokens
           WHERE id IN (current_setting('test.refresh')::uuid, current_setting('test.refresh2')::uuid)), 1::bigint,
  'the successor stays in the same family');
SELECT throws_ok($$SELECT keen.rotate_refresh_token(tap.sha('refresh-1'), tap.sha('refresh-3'), now() + interval '1 day')$$,
  'KE011', NULL, 'rotating an already rotated refresh token raises KE011');
SELECT throws_ok($$SELECT keen.rotate_refresh_token(tap.sha('api-1'), tap.sha('refresh-3'), now() + interval '1 day')$$,
  'KE006', NULL, 'an api_key cannot be rotated as a refresh token: KE006');
SELECT throws_ok($$SELECT keen.rotate_refresh_token(tap.sha('unknown'), tap.sha('refresh-3'), now() + interval '1 day')$$,
  'KE006', NULL, 'an unknown refresh token cannot be rotated: KE006');
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', '', true);
END $$;
SELECT is((SELECT token_id FROM keen.authenticate_token(tap.sha('refresh-2'))), current_setting('test.refresh2')::uuid,
  'the successor authenticates');
SELECT is_empty($$SELECT * FROM keen.authenticate_token(tap.sha('refresh-1'))$$,
  'a replayed rotated refresh token authenticates nothing');
SELECT is_empty($$SELECT * FROM keen.authenticate_token(tap.sha('refresh-2'))$$,
  'after a replay the whole family is revoked: the successor authenticates nothing');
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', current_setting('test.alice'), true);
END $$;
SELECT is((SELECT revoked_reason FROM keen.auth_tokens WHERE id = current_setting('test.refresh2')::uuid), 'reuse_detected',
  'the family is marked reuse_detected');
SELECT throws_ok($$SELECT keen.rotate_refresh_token(tap.sha('refresh-2'), tap.sha('refresh-3'), now() + interval '1 day')$$,
  'KE011', NULL, 'a token of a family revoked for reuse cannot be rotated: KE011');

-- revocation
DO $$ BEGIN
  PERFORM set_config('test.r10', (keen.create_auth_token('jwt_refresh', tap.sha('r10'), p_expires_at => now() + interval '1 day')).id::text, true);
END $$;
DO $$ BEGIN
  PERFORM set_config('test.r11', (keen.rotate_refresh_token(tap.sha('r10'), tap.sha('r11'), now() + interval '1 day')).id::text, true);
END $$;
DO $$ BEGIN
  PERFORM set_config('test.r12', (keen.rotate_refresh_token(tap.sha('r11'), tap.sha('r12'), now() + interval '1 day')).id::text, true);
END $$;
SELECT is((keen.revoke_token(current_setting('test.api')::uuid)).revoked_reason, 'revoked',
  'revoke_token revokes the caller''s token');
SELECT is((keen.revoke_token(current_setting('test.api')::uuid)).revoked_reason, 'revoked',
  'revoking a revoked token again is a no-op');
SELECT lives_ok($$SELECT keen.revoke_token(current_setting('test.r12')::uuid)$$, 'revoking the live refresh token works');
SELECT is((SELECT count(*) FROM keen.auth_tokens WHERE family_id = (SELECT family_id FROM keen.auth_tokens WHERE id = current_setting('test.r12')::uuid) AND revoked_at IS NULL),
  0::bigint, 'revoking a refresh token ends its whole family');
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', '', true);
END $$;
SELECT is_empty($$SELECT * FROM keen.authenticate_token(tap.sha('api-1'))$$,
  'a revoked token authenticates nothing');
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', current_setting('test.alice'), true);
END $$;
SELECT throws_ok($$UPDATE keen.auth_tokens SET revoked_at = NULL, revoked_reason = NULL
  WHERE id = current_setting('test.api')::uuid$$, '42501', NULL,
  'revocation is final: keen_app cannot revive a revoked token');
SELECT throws_ok($$UPDATE keen.auth_tokens SET usage_count = 0, rate_window_count = 0$$, '42501', NULL,
  'keen_app cannot reset usage counters or rate-limit windows (written only by authenticate_token)');
SELECT throws_ok($$UPDATE keen.auth_tokens SET token_hash = tap.sha('other')$$, '42501', NULL,
  'keen_app cannot rewrite a token''s hash');
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', '', true);
END $$;

-- ===== as another tenant =====================================================
DO $$ BEGIN
  PERFORM set_config('app.current_user_id', current_setting('test.bob'), true);
END $$;
SELECT is_empty($$SELECT * FROM keen.auth_tokens WHERE user_id = current_setting('test.alice')::uuid$$,
  'another tenant sees none of alice''s tokens');
SELECT throws_ok($$SELECT keen.revoke_token(current_setting('test.refresh2')::uuid)$$, 'KE006', NULL,
  'another tenant cannot revoke alice''s token: KE006');
SELECT throws_ok($$SELECT keen.rotate_refresh_token(tap.sha('r10'), tap.sha('bob-r'), now() + interval '1 day')$$,
  'KE006', NULL, 'another tenant cannot rotate alice''s refresh token: KE006');
SELECT is((SELECT email FROM keen.users), 'bob@example.com', 'another tenant reads only its own user row');
-- The attacker with keen_app: the lookup of the values unique across tenants holds every
-- user's e-mail and username; keen_app cannot read a row of it, nor run the operator check.
SELECT throws_ok($$SELECT value FROM keen.tenant_lookup WHERE kind = 'email'$$, '42501', NULL,
  'keen_app cannot enumerate e-mails: no privilege on keen.tenant_lookup');
SELECT throws_ok($$SELECT * FROM keen.verify_tenant_lookup()$$, '42501', NULL,
  'keen_app cannot run verify_tenant_lookup (an operator check)');
SELECT throws_ok($$SELECT keen.lookup_claim('email', 'x@example.com', current_setting('test.bob')::uuid)$$, '42501', NULL,
  'keen_app cannot claim a value in the lookup directly');
RESET ROLE;
SELECT is_empty($$SELECT * FROM keen.verify_tenant_lookup()$$,
  'verify_tenant_lookup is empty after the sign-up, login, token and rotation flows');

SELECT * FROM finish();
ROLLBACK;
