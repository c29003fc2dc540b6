-- Structure: users and tokens.
-- Every column (type, nullability, default), key, foreign key, CHECK constraint and index;
-- the rules behind the constraints are exercised in 05-08_*_rules.sql.
BEGIN;
SELECT plan(161);

-- ===== keen.users =================================================================
SELECT has_table('keen', 'users', 'keen.users exists');
SELECT table_owner_is('keen', 'users', 'keen_owner', 'keen_owner owns keen.users');
SELECT columns_are('keen', 'users', ARRAY[
    'id', 'user_id', 'email', 'username', 'password_hash', 'display_name', 'role',
    'is_admin', 'admin_privileges', 'email_verified', 'email_verification_token',
    'account_status', 'mfa_enabled', 'mfa_secret', 'recovery_codes', 'timezone',
    'preferences', 'subscription_tier', 'subscription_status', 'created_at', 'updated_at',
    'last_login_at', 'last_login_ip', 'avatar_url', 'billing_customer_id',
    'email_verification_expires_at', 'suspended_reason'],
  'keen.users has exactly the expected columns');
SELECT col_type_is('keen', 'users', 'id', 'uuid', 'users.id is uuid');
SELECT col_not_null('keen', 'users', 'id', 'users.id is NOT NULL');
SELECT col_default_is('keen', 'users', 'id', 'gen_random_uuid()', 'users.id defaults to gen_random_uuid()');
SELECT col_type_is('keen', 'users', 'user_id', 'uuid', 'users.user_id is uuid');
SELECT col_not_null('keen', 'users', 'user_id', 'users.user_id is NOT NULL');
SELECT is((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d JOIN pg_attribute AS a ON (a.attrelid, a.attnum) = (d.adrelid, d.adnum)
            WHERE d.adrelid = 'keen.users'::regclass AND a.attname = 'user_id' AND a.attgenerated = 's'),
          'id', 'users.user_id is a stored generated column');
SELECT col_type_is('keen', 'users', 'email', 'text', 'users.email is text');
SELECT col_not_null('keen', 'users', 'email', 'users.email is NOT NULL');
SELECT col_hasnt_default('keen', 'users', 'email', 'users.email has no default');
SELECT col_type_is('keen', 'users', 'username', 'text', 'users.username is text');
SELECT col_not_null('keen', 'users', 'username', 'users.username is NOT NULL');
SELECT col_hasnt_default('keen', 'users', 'username', 'users.username has no default');
SELECT col_type_is('keen', 'users', 'password_hash', 'text', 'users.password_hash is text');
SELECT col_not_null('keen', 'users', 'password_hash', 'users.password_hash is NOT NULL');
SELECT col_hasnt_default('keen', 'users', 'password_hash', 'users.password_hash has no default');
SELECT col_type_is('keen', 'users', 'display_name', 'text', 'users.display_name is text');
SELECT col_is_null('keen', 'users', 'display_name', 'users.display_name is nullable');
SELECT col_hasnt_default('keen', 'users', 'display_name', 'users.display_name has no default');
SELECT col_type_is('keen', 'users', 'role', 'text', 'users.role is text');
SELECT col_not_null('keen', 'users', 'role', 'users.role is NOT NULL');
SELECT col_default_is('keen', 'users', 'role', 'user', 'users.role defaults to user');
SELECT col_type_is('keen', 'users', 'is_admin', 'boolean', 'users.is_admin is boolean');
SELECT col_not_null('keen', 'users', 'is_admin', 'users.is_admin is NOT NULL');
SELECT is((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d JOIN pg_attribute AS a ON (a.attrelid, a.attnum) = (d.adrelid, d.adnum)
            WHERE d.adrelid = 'keen.users'::regclass AND a.attname = 'is_admin' AND a.attgenerated = 's'),
          '(role = ANY (ARRAY[''admin''::text, ''super_admin''::text]))', 'users.is_admin is a stored generated column');
SELECT col_type_is('keen', 'users', 'admin_privileges', 'jsonb', 'users.admin_privileges is jsonb');
SELECT col_not_null('keen', 'users', 'admin_privileges', 'users.admin_privileges is NOT NULL');
SELECT col_default_is('keen', 'users', 'admin_privileges', '{}', 'users.admin_privileges defaults to {}');
SELECT col_type_is('keen', 'users', 'email_verified', 'boolean', 'users.email_verified is boolean');
SELECT col_not_null('keen', 'users', 'email_verified', 'users.email_verified is NOT NULL');
SELECT col_default_is('keen', 'users', 'email_verified', 'false', 'users.email_verified defaults to false');
SELECT col_type_is('keen', 'users', 'email_verification_token', 'text', 'users.email_verification_token is text');
SELECT col_is_null('keen', 'users', 'email_verification_token', 'users.email_verification_token is nullable');
SELECT col_hasnt_default('keen', 'users', 'email_verification_token', 'users.email_verification_token has no default');
SELECT col_type_is('keen', 'users', 'account_status', 'text', 'users.account_status is text');
SELECT col_not_null('keen', 'users', 'account_status', 'users.account_status is NOT NULL');
SELECT col_default_is('keen', 'users', 'account_status', 'active', 'users.account_status defaults to active');
SELECT col_type_is('keen', 'users', 'mfa_enabled', 'boolean', 'users.mfa_enabled is boolean');
SELECT col_not_null('keen', 'users', 'mfa_enabled', 'users.mfa_enabled is NOT NULL');
SELECT col_default_is('keen', 'users', 'mfa_enabled', 'false', 'users.mfa_enabled defaults to false');
SELECT col_type_is('keen', 'users', 'mfa_secret', 'text', 'users.mfa_secret is text');
SELECT col_is_null('keen', 'users', 'mfa_secret', 'users.mfa_secret is nullable');
SELECT col_hasnt_default('keen', 'users', 'mfa_secret', 'users.mfa_secret has no default');
SELECT col_type_is('keen', 'users', 'recovery_codes', 'text[]', 'users.recovery_codes is text[]');
SELECT col_is_null('keen', 'users', 'recovery_codes', 'users.recovery_codes is nullable');
SELECT col_hasnt_default('keen', 'users', 'recovery_codes', 'users.recovery_codes has no default');
SELECT col_type_is('keen', 'users', 'timezone', 'text', 'users.timezone is text');
SELECT col_not_null('keen', 'users', 'timezone', 'users.timezone is NOT NULL');
SELECT col_default_is('keen', 'users', 'timezone', 'UTC', 'users.timezone defaults to UTC');
SELECT col_type_is('keen', 'users', 'preferences', 'jsonb', 'users.preferences is jsonb');
SELECT col_not_null('keen', 'users', 'preferences', 'users.preferences is NOT NULL');
SELECT col_default_is('keen', 'users', 'preferences', '{}', 'users.preferences defaults to {}');
SELECT col_type_is('keen', 'users', 'subscription_tier', 'text', 'users.subscription_tier is text');
SELECT col_not_null('keen', 'users', 'subscription_tier', 'users.subscription_tier is NOT NULL');
SELECT col_default_is('keen', 'users', 'subscription_tier', 'individual', 'users.subscription_tier defaults to individual');
SELECT col_type_is('keen', 'users', 'subscription_status', 'text', 'users.subscription_status is text');
SELECT col_not_null('keen', 'users', 'subscription_status', 'users.subscription_status is NOT NULL');
SELECT col_default_is('keen', 'users', 'subscription_status', 'active', 'users.subscription_status defaults to active');
SELECT col_type_is('keen', 'users', 'created_at', 'timestamp with time zone', 'users.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'users', 'created_at', 'users.created_at is NOT NULL');
SELECT col_default_is('keen', 'users', 'created_at', 'now()', 'users.created_at defaults to now()');
SELECT col_type_is('keen', 'users', 'updated_at', 'timestamp with time zone', 'users.updated_at is timestamp with time zone');
SELECT col_not_null('keen', 'users', 'updated_at', 'users.updated_at is NOT NULL');
SELECT col_default_is('keen', 'users', 'updated_at', 'now()', 'users.updated_at defaults to now()');
SELECT col_type_is('keen', 'users', 'last_login_at', 'timestamp with time zone', 'users.last_login_at is timestamp with time zone');
SELECT col_is_null('keen', 'users', 'last_login_at', 'users.last_login_at is nullable');
SELECT col_hasnt_default('keen', 'users', 'last_login_at', 'users.last_login_at has no default');
SELECT col_type_is('keen', 'users', 'last_login_ip', 'inet', 'users.last_login_ip is inet');
SELECT col_is_null('keen', 'users', 'last_login_ip', 'users.last_login_ip is nullable');
SELECT col_hasnt_default('keen', 'users', 'last_login_ip', 'users.last_login_ip has no default');
-- keys
SELECT hasnt_index('keen', 'users', 'users_user_id_key',
  'no UNIQUE (user_id) beside the primary key (id): user_id is generated from id, the distribution key');
SELECT has_pk('keen', 'users', 'keen.users has a primary key');
SELECT col_is_pk('keen', 'users', ARRAY['id'], 'users_pkey: PRIMARY KEY (id)');
-- check constraints
SELECT has_check('keen', 'users', 'keen.users has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.users'::regclass AND contype = 'c'$$,
  ARRAY[
    'users_account_status_check', 'users_email_check', 'users_email_verification_check',
    'users_mfa_check', 'users_password_hash_check', 'users_role_check',
    'users_subscription_status_check', 'users_subscription_tier_check',
    'users_timezone_check', 'users_username_check', 'users_avatar_url_check',
    'users_billing_customer_id_check', 'users_display_name_check', 'users_preferences_check',
    'users_suspended_reason_check', 'users_email_verification_token_check',
    'users_email_verification_expires_at_check', 'users_mfa_secret_check',
    'users_recovery_codes_check', 'users_erased_identity_check'],
  'keen.users has exactly its named CHECK constraints');
-- indexes
SELECT indexes_are('keen', 'users', ARRAY['users_pkey'],
  'keen.users has exactly the expected indexes (0016: e-mail, username, verification token and billing customer are unique through keen.tenant_lookup)');
SELECT col_is_pk('keen', 'tenant_lookup', ARRAY['kind', 'value'],
  'tenant_lookup_pkey: PRIMARY KEY (kind, value), the uniqueness of the values across tenants');
SELECT table_privs_are('keen', 'tenant_lookup', 'keen_app', ARRAY[]::text[],
  'keen_app holds no privilege on keen.tenant_lookup: no tenant enumerates e-mails or usernames');

-- ===== keen.auth_tokens ===========================================================
SELECT has_table('keen', 'auth_tokens', 'keen.auth_tokens exists');
SELECT table_owner_is('keen', 'auth_tokens', 'keen_owner', 'keen_owner owns keen.auth_tokens');
SELECT columns_are('keen', 'auth_tokens', ARRAY[
    'id', 'user_id', 'token_type', 'token_hash', 'token_name', 'scopes', 'expires_at',
    'last_used_at', 'usage_count', 'created_ip', 'last_used_ip', 'user_agent',
    'revoked_at', 'revoked_reason', 'is_active', 'rate_limit_per_hour',
    'rate_window_start', 'rate_window_count', 'family_id', 'replaced_by', 'created_at',
    'updated_at'],
  'keen.auth_tokens has exactly the expected columns');
SELECT col_type_is('keen', 'auth_tokens', 'id', 'uuid', 'auth_tokens.id is uuid');
SELECT col_not_null('keen', 'auth_tokens', 'id', 'auth_tokens.id is NOT NULL');
SELECT col_default_is('keen', 'auth_tokens', 'id', 'gen_random_uuid()', 'auth_tokens.id defaults to gen_random_uuid()');
SELECT col_type_is('keen', 'auth_tokens', 'user_id', 'uuid', 'auth_tokens.user_id is uuid');
SELECT col_not_null('keen', 'auth_tokens', 'user_id', 'auth_tokens.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'auth_tokens', 'user_id', 'auth_tokens.user_id has no default');
SELECT col_type_is('keen', 'auth_tokens', 'token_type', 'text', 'auth_tokens.token_type is text');
SELECT col_not_null('keen', 'auth_tokens', 'token_type', 'auth_tokens.token_type is NOT NULL');
SELECT col_hasnt_default('keen', 'auth_tokens', 'token_type', 'auth_tokens.token_type has no default');
SELECT col_type_is('keen', 'auth_tokens', 'token_hash', 'text', 'auth_tokens.token_hash is text');
SELECT col_not_null('keen', 'auth_tokens', 'token_hash', 'auth_tokens.token_hash is NOT NULL');
SELECT col_hasnt_default('keen', 'auth_tokens', 'token_hash', 'auth_tokens.token_hash has no default');
SELECT col_type_is('keen', 'auth_tokens', 'token_name', 'text', 'auth_tokens.token_name is text');
SELECT col_is_null('keen', 'auth_tokens', 'token_name', 'auth_tokens.token_name is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'token_name', 'auth_tokens.token_name has no default');
SELECT col_type_is('keen', 'auth_tokens', 'scopes', 'text[]', 'auth_tokens.scopes is text[]');
SELECT col_not_null('keen', 'auth_tokens', 'scopes', 'auth_tokens.scopes is NOT NULL');
SELECT col_default_is('keen', 'auth_tokens', 'scopes', '{}', 'auth_tokens.scopes defaults to {}');
SELECT col_type_is('keen', 'auth_tokens', 'expires_at', 'timestamp with time zone', 'auth_tokens.expires_at is timestamp with time zone');
SELECT col_is_null('keen', 'auth_tokens', 'expires_at', 'auth_tokens.expires_at is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'expires_at', 'auth_tokens.expires_at has no default');
SELECT col_type_is('keen', 'auth_tokens', 'last_used_at', 'timestamp with time zone', 'auth_tokens.last_used_at is timestamp with time zone');
SELECT col_is_null('keen', 'auth_tokens', 'last_used_at', 'auth_tokens.last_used_at is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'last_used_at', 'auth_tokens.last_used_at has no default');
SELECT col_type_is('keen', 'auth_tokens', 'usage_count', 'bigint', 'auth_tokens.usage_count is bigint');
SELECT col_not_null('keen', 'auth_tokens', 'usage_count', 'auth_tokens.usage_count is NOT NULL');
SELECT col_default_is('keen', 'auth_tokens', 'usage_count', '0', 'auth_tokens.usage_count defaults to 0');
SELECT col_type_is('keen', 'auth_tokens', 'created_ip', 'inet', 'auth_tokens.created_ip is inet');
SELECT col_is_null('keen', 'auth_tokens', 'created_ip', 'auth_tokens.created_ip is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'created_ip', 'auth_tokens.created_ip has no default');
SELECT col_type_is('keen', 'auth_tokens', 'last_used_ip', 'inet', 'auth_tokens.last_used_ip is inet');
SELECT col_is_null('keen', 'auth_tokens', 'last_used_ip', 'auth_tokens.last_used_ip is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'last_used_ip', 'auth_tokens.last_used_ip has no default');
SELECT col_type_is('keen', 'auth_tokens', 'user_agent', 'text', 'auth_tokens.user_agent is text');
SELECT col_is_null('keen', 'auth_tokens', 'user_agent', 'auth_tokens.user_agent is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'user_agent', 'auth_tokens.user_agent has no default');
SELECT col_type_is('keen', 'auth_tokens', 'revoked_at', 'timestamp with time zone', 'auth_tokens.revoked_at is timestamp with time zone');
SELECT col_is_null('keen', 'auth_tokens', 'revoked_at', 'auth_tokens.revoked_at is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'revoked_at', 'auth_tokens.revoked_at has no default');
SELECT col_type_is('keen', 'auth_tokens', 'revoked_reason', 'text', 'auth_tokens.revoked_reason is text');
SELECT col_is_null('keen', 'auth_tokens', 'revoked_reason', 'auth_tokens.revoked_reason is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'revoked_reason', 'auth_tokens.revoked_reason has no default');
SELECT col_type_is('keen', 'auth_tokens', 'is_active', 'boolean', 'auth_tokens.is_active is boolean');
SELECT col_not_null('keen', 'auth_tokens', 'is_active', 'auth_tokens.is_active is NOT NULL');
SELECT is((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d JOIN pg_attribute AS a ON (a.attrelid, a.attnum) = (d.adrelid, d.adnum)
            WHERE d.adrelid = 'keen.auth_tokens'::regclass AND a.attname = 'is_active' AND a.attgenerated = 's'),
          '(revoked_at IS NULL)', 'auth_tokens.is_active is a stored generated column');
SELECT col_type_is('keen', 'auth_tokens', 'rate_limit_per_hour', 'integer', 'auth_tokens.rate_limit_per_hour is integer');
SELECT col_not_null('keen', 'auth_tokens', 'rate_limit_per_hour', 'auth_tokens.rate_limit_per_hour is NOT NULL');
SELECT col_default_is('keen', 'auth_tokens', 'rate_limit_per_hour', '1000', 'auth_tokens.rate_limit_per_hour defaults to 1000');
SELECT col_type_is('keen', 'auth_tokens', 'rate_window_start', 'timestamp with time zone', 'auth_tokens.rate_window_start is timestamp with time zone');
SELECT col_is_null('keen', 'auth_tokens', 'rate_window_start', 'auth_tokens.rate_window_start is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'rate_window_start', 'auth_tokens.rate_window_start has no default');
SELECT col_type_is('keen', 'auth_tokens', 'rate_window_count', 'integer', 'auth_tokens.rate_window_count is integer');
SELECT col_not_null('keen', 'auth_tokens', 'rate_window_count', 'auth_tokens.rate_window_count is NOT NULL');
SELECT col_default_is('keen', 'auth_tokens', 'rate_window_count', '0', 'auth_tokens.rate_window_count defaults to 0');
SELECT col_type_is('keen', 'auth_tokens', 'family_id', 'uuid', 'auth_tokens.family_id is uuid');
SELECT col_is_null('keen', 'auth_tokens', 'family_id', 'auth_tokens.family_id is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'family_id', 'auth_tokens.family_id has no default');
SELECT col_type_is('keen', 'auth_tokens', 'replaced_by', 'uuid', 'auth_tokens.replaced_by is uuid');
SELECT col_is_null('keen', 'auth_tokens', 'replaced_by', 'auth_tokens.replaced_by is nullable');
SELECT col_hasnt_default('keen', 'auth_tokens', 'replaced_by', 'auth_tokens.replaced_by has no default');
SELECT col_type_is('keen', 'auth_tokens', 'created_at', 'timestamp with time zone', 'auth_tokens.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'auth_tokens', 'created_at', 'auth_tokens.created_at is NOT NULL');
SELECT col_default_is('keen', 'auth_tokens', 'created_at', 'now()', 'auth_tokens.created_at defaults to now()');
SELECT col_type_is('keen', 'auth_tokens', 'updated_at', 'timestamp with time zone', 'auth_tokens.updated_at is timestamp with time zone');
SELECT col_not_null('keen', 'auth_tokens', 'updated_at', 'auth_tokens.updated_at is NOT NULL');
SELECT col_default_is('keen', 'auth_tokens', 'updated_at', 'now()', 'auth_tokens.updated_at defaults to now()');
-- keys
SELECT is((SELECT pg_get_indexdef('keen.auth_tokens_user_id_token_hash_key'::regclass)),
  'CREATE UNIQUE INDEX auth_tokens_user_id_token_hash_key ON keen.auth_tokens USING btree (user_id, token_hash)',
  'auth_tokens_user_id_token_hash_key: unique (user_id, token_hash) (across tenants: keen.tenant_lookup)');
SELECT hasnt_index('keen', 'auth_tokens', 'auth_tokens_user_id_id_key', 'no UNIQUE (user_id, id) beside the primary key');
SELECT has_pk('keen', 'auth_tokens', 'keen.auth_tokens has a primary key');
SELECT col_is_pk('keen', 'auth_tokens', ARRAY['user_id', 'id'], 'auth_tokens_pkey: PRIMARY KEY (user_id, id)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'auth_tokens', ARRAY['user_id', 'replaced_by'], 'keen', 'auth_tokens', ARRAY['user_id', 'id'],
  'auth_tokens_replaced_by_fkey: (user_id, replaced_by) references keen.auth_tokens (user_id, id)');
SELECT fk_ok('keen', 'auth_tokens', ARRAY['user_id'], 'keen', 'users', ARRAY['id'],
  'auth_tokens_user_id_fkey: (user_id) references keen.users (id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.auth_tokens'::regclass AND contype = 'f'$$,
  $$VALUES
    ('auth_tokens_replaced_by_fkey', 'FOREIGN KEY (user_id, replaced_by) REFERENCES keen.auth_tokens(user_id, id) ON DELETE RESTRICT'),
    ('auth_tokens_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES keen.users(id) ON DELETE CASCADE')$$,
  'keen.auth_tokens has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'auth_tokens', 'keen.auth_tokens has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.auth_tokens'::regclass AND contype = 'c'$$,
  ARRAY[
    'auth_tokens_expires_at_check', 'auth_tokens_family_check',
    'auth_tokens_rate_limit_per_hour_check', 'auth_tokens_rate_window_count_check',
    'auth_tokens_replaced_by_check', 'auth_tokens_revoked_reason_check',
    'auth_tokens_token_hash_check', 'auth_tokens_token_type_check',
    'auth_tokens_usage_count_check'],
  'keen.auth_tokens has exactly its named CHECK constraints');
-- indexes
SELECT indexes_are('keen', 'auth_tokens', ARRAY[
    'auth_tokens_user_id_family_id_idx', 'auth_tokens_pkey', 'auth_tokens_user_id_token_hash_key',
    'auth_tokens_user_id_created_at_idx'],
  'keen.auth_tokens has exactly the expected indexes');
SELECT is((SELECT pg_get_indexdef('keen.auth_tokens_user_id_family_id_idx'::regclass)),
  'CREATE INDEX auth_tokens_user_id_family_id_idx ON keen.auth_tokens USING btree (user_id, family_id) WHERE (family_id IS NOT NULL)',
  'auth_tokens_user_id_family_id_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.auth_tokens_user_id_created_at_idx'::regclass)),
  'CREATE INDEX auth_tokens_user_id_created_at_idx ON keen.auth_tokens USING btree (user_id, created_at DESC)',
  'auth_tokens_user_id_created_at_idx: its columns, order, uniqueness and predicate');

SELECT * FROM finish();
ROLLBACK;
