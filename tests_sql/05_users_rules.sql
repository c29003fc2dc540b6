-- Data rules of users and auth_tokens: every row that breaks one fails with its constraint's
-- SQLSTATE and name, and writes nothing.
BEGIN;
SELECT plan(37);

-- ===== fixtures (as the owner) ===============================================
-- The constraints are the last line of defence under the functions and triggers (whose
-- behaviour the domain's own test files cover): with this transaction's triggers off,
-- each rule below is proved by its constraint alone.
ALTER TABLE keen.users DISABLE TRIGGER USER;
ALTER TABLE keen.auth_tokens DISABLE TRIGGER USER;
INSERT INTO keen.users (id, email, username, password_hash) VALUES
  ('00000000-0000-4000-8000-00000000a11c', 'alice@example.com', 'alice', repeat('a', 32)),
  ('00000000-0000-4000-8000-000000000b0b', 'bob@example.com', 'bob', repeat('b', 32));
INSERT INTO keen.auth_tokens (id, user_id, token_type, token_hash) VALUES
  ('00000000-0000-4000-8000-0000000a0001', '00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('1', 64)),
  ('00000000-0000-4000-8000-0000000b0001', '00000000-0000-4000-8000-000000000b0b', 'api_key', repeat('2', 64));
-- Values unique across tenants live in keen.tenant_lookup (0016), as the functions claim them.
INSERT INTO keen.tenant_lookup (kind, value, user_id, token_id) VALUES
  ('email', 'alice@example.com', '00000000-0000-4000-8000-00000000a11c', NULL),
  ('username', 'alice', '00000000-0000-4000-8000-00000000a11c', NULL),
  ('auth_token', repeat('1', 64), '00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-0000000a0001'),
  ('auth_token', repeat('2', 64), '00000000-0000-4000-8000-000000000b0b', '00000000-0000-4000-8000-0000000b0001');

-- ===== users: enumerations ===================================================
SELECT lives_ok(
  $$INSERT INTO keen.users (email, username, password_hash, subscription_tier, subscription_status, account_status, role)
    SELECT 'enum' || n || '@example.com', 'enum' || n, repeat('e', 32),
           (ARRAY['individual', 'team', 'enterprise'])[n], (ARRAY['active', 'past_due', 'cancelled'])[n],
           (ARRAY['active', 'suspended', 'deleted'])[n], (ARRAY['user', 'admin', 'super_admin'])[n]
    FROM generate_series(1, 3) AS n$$,
  'users accept every listed tier, subscription status, account status and role');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, subscription_tier) VALUES ('t@example.com', 'tuser', repeat('t', 32), 'gold')$$,
  '23514', 'new row for relation "users" violates check constraint "users_subscription_tier_check"',
  'an unknown subscription tier is refused');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, subscription_status) VALUES ('t@example.com', 'tuser', repeat('t', 32), 'trial')$$,
  '23514', 'new row for relation "users" violates check constraint "users_subscription_status_check"',
  'an unknown subscription status is refused');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, account_status) VALUES ('t@example.com', 'tuser', repeat('t', 32), 'banned')$$,
  '23514', 'new row for relation "users" violates check constraint "users_account_status_check"',
  'an unknown account status is refused (the original''s "banned" included)');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, role) VALUES ('t@example.com', 'tuser', repeat('t', 32), 'root')$$,
  '23514', 'new row for relation "users" violates check constraint "users_role_check"',
  'an unknown role is refused');

-- ===== users: identity =======================================================
SELECT throws_ok(
  $$INSERT INTO keen.tenant_lookup (kind, value, user_id) VALUES ('email', lower('ALICE@Example.COM'), '00000000-0000-4000-8000-000000000b0b')$$,
  '23505', 'duplicate key value violates unique constraint "tenant_lookup_pkey"',
  'an e-mail differing only by case from an existing one is refused (the lookup holds it lower-cased)');
SELECT throws_ok(
  $$INSERT INTO keen.tenant_lookup (kind, value, user_id) VALUES ('username', 'ALICE', '00000000-0000-4000-8000-000000000b0b')$$,
  '23514', 'new row for relation "tenant_lookup" violates check constraint "tenant_lookup_value_check"',
  'a username is looked up lower-cased only, so one differing by case is the same value');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash) VALUES ('not-an-email', 'tuser', repeat('t', 32))$$,
  '23514', 'new row for relation "users" violates check constraint "users_email_check"',
  'an e-mail without a single @ is refused');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash) VALUES ('t@example.com', 'a b', repeat('t', 32))$$,
  '23514', 'new row for relation "users" violates check constraint "users_username_check"',
  'a username with spaces or under 3 characters is refused');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash) VALUES ('t@example.com', 'tuser', 'short')$$,
  '23514', 'new row for relation "users" violates check constraint "users_password_hash_check"',
  'a password hash too short to be a hash is refused');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, timezone) VALUES ('t@example.com', 'tuser', repeat('t', 32), '')$$,
  '23514', 'new row for relation "users" violates check constraint "users_timezone_check"',
  'an empty time zone is refused');

-- ===== users: columns that could contradict each other =======================
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, mfa_enabled) VALUES ('t@example.com', 'tuser', repeat('t', 32), true)$$,
  '23514', 'new row for relation "users" violates check constraint "users_mfa_check"',
  'MFA cannot be enabled without a secret');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, email_verified, email_verification_token)
    VALUES ('t@example.com', 'tuser', repeat('t', 32), true, 'pending-token')$$,
  '23514', 'new row for relation "users" violates check constraint "users_email_verification_check"',
  'a verified e-mail cannot still have a pending verification token');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, is_admin) VALUES ('t@example.com', 'tuser', repeat('t', 32), true)$$,
  '428C9', NULL,
  'is_admin cannot be written: it is derived from role');
SELECT throws_ok(
  $$INSERT INTO keen.users (email, username, password_hash, user_id)
    VALUES ('t@example.com', 'tuser', repeat('t', 32), '00000000-0000-4000-8000-000000000b0b')$$,
  '428C9', NULL,
  'user_id cannot be written: it is always the row''s id');
SELECT is(
  (SELECT is_admin FROM keen.users WHERE username = 'enum2'),
  true,
  'is_admin follows role: an admin is an admin');

-- ===== auth_tokens ===========================================================
SELECT lives_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, family_id)
    SELECT '00000000-0000-4000-8000-00000000a11c', t, repeat((n + 4)::text, 64),
           CASE t WHEN 'jwt_refresh' THEN gen_random_uuid() END
    FROM unnest(ARRAY['jwt_refresh', 'api_key', 'session']) WITH ORDINALITY AS v(t, n)$$,
  'auth_tokens accept every listed token type');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash) VALUES ('00000000-0000-4000-8000-00000000a11c', 'password', repeat('c', 64))$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_token_type_check"',
  'an unknown token type is refused');
SELECT throws_ok(
  $$INSERT INTO keen.tenant_lookup (kind, value, user_id, token_id)
    VALUES ('auth_token', repeat('2', 64), '00000000-0000-4000-8000-00000000a11c', gen_random_uuid())$$,
  '23505', 'duplicate key value violates unique constraint "tenant_lookup_pkey"',
  'a token hash is unique across all users (authentication looks it up globally)');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash) VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', 'secret-token')$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_token_hash_check"',
  'only a lower-case hex SHA-256 is stored, never the token');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash) VALUES ('00000000-0000-4000-8000-00000000a11c', 'jwt_refresh', repeat('c', 64))$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_family_check"',
  'a refresh token needs a family');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, family_id)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), gen_random_uuid())$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_family_check"',
  'only refresh tokens have a family');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, rate_limit_per_hour)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), 0)$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_rate_limit_per_hour_check"',
  'a rate limit must be positive');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, usage_count)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), -1)$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_usage_count_check"',
  'a usage count cannot be negative');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, rate_window_count)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), -1)$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_rate_window_count_check"',
  'a rate-window count cannot be negative');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, expires_at)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), now() - interval '1 hour')$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_expires_at_check"',
  'a token cannot expire before it was created');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, revoked_at, revoked_reason, replaced_by)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), now(), 'rotated', '00000000-0000-4000-8000-0000000b0001')$$,
  '23503', 'insert or update on table "auth_tokens" violates foreign key constraint "auth_tokens_replaced_by_fkey"',
  'a token cannot be replaced by another user''s token');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, replaced_by)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), '00000000-0000-4000-8000-0000000a0001')$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_replaced_by_check"',
  'only a revoked token has a successor');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, revoked_at, revoked_reason)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), now(), 'expired')$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_revoked_reason_check"',
  'an unknown revocation reason is refused');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, revoked_at)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), now())$$,
  '23514', 'new row for relation "auth_tokens" violates check constraint "auth_tokens_revoked_reason_check"',
  'a revoked token records why');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash) VALUES ('00000000-0000-4000-8000-0000000000ff', 'api_key', repeat('c', 64))$$,
  '23503', 'insert or update on table "auth_tokens" violates foreign key constraint "auth_tokens_user_id_fkey"',
  'a token belongs to an existing user');
SELECT throws_ok(
  $$INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, is_active)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'api_key', repeat('c', 64), false)$$,
  '428C9', NULL,
  'is_active cannot be written: it is derived from revoked_at');
SELECT is(
  (SELECT is_active FROM keen.auth_tokens WHERE id = '00000000-0000-4000-8000-0000000a0001'),
  true,
  'a token is active until revoked');
UPDATE keen.auth_tokens SET revoked_at = now(), revoked_reason = 'revoked' WHERE id = '00000000-0000-4000-8000-0000000a0001';
SELECT is(
  (SELECT is_active FROM keen.auth_tokens WHERE id = '00000000-0000-4000-8000-0000000a0001'),
  false,
  'revoking a token makes it inactive');

-- ===== nothing was written by the refused rows ================================
SELECT is((SELECT count(*) FROM keen.users), 5::bigint,
  'users holds only the fixtures and the accepted rows');
SELECT is((SELECT count(*) FROM keen.auth_tokens), 5::bigint,
  'auth_tokens holds only the fixtures and the accepted rows');
SELECT is((SELECT count(*) FROM keen.users WHERE email IN ('t@example.com', 'not-an-email', 'alice2@example.com')), 0::bigint,
  'no refused user row exists');

SELECT * FROM finish();
ROLLBACK;
