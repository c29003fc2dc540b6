-- Tenant lookup (issue 19): the values unique across tenants (e-mail, username, token hashes,
-- billing customer id) move to keen.tenant_lookup, keyed by the value (distributed by it on
-- Citus), and the users/auth_tokens indexes that held them go; sign-up, login, token
-- authentication, e-mail confirmation and billing find the tenant there first, then read the
-- tenant's rows by id. Every function that writes users appends its audit row itself
-- (keen.append_user_audit) and update_profile rebuilds the usage statistics on a new time
-- zone: the triggers that did it (_900_audit, _500_rebucket_usage_stats) touched other tables,
-- which a trigger on a distributed table must not. The audit trail's guard reads no table.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';
-- squawk-ignore-file ban-drop-index
-- squawk-ignore-file ban-drop-constraint
-- squawk-ignore-file ban-drop-function
-- squawk-ignore-file require-concurrent-index-deletion
-- squawk-ignore-file require-concurrent-index-creation
-- squawk-ignore-file disallowed-unique-constraint
-- squawk-ignore-file prefer-text-field

-- ===== the lookup table ===================================================================
-- Values unique across tenants, keyed by the value (DESIGN.md "Scale beyond one server"):
-- sign-up, login, token authentication, e-mail confirmation and billing find the tenant here
-- before any tenant is known, and the primary key decides who holds a value (two sign-ups
-- with one e-mail: the second insert waits for the first and finds it taken). On Citus it is
-- distributed by value, apart from the tenants (keen_sql/sql/citus/distribute.sql). Only the
-- SECURITY DEFINER functions read and write it: keen_app holds no privilege on it, so no
-- tenant can enumerate e-mails or usernames.
CREATE TABLE keen.tenant_lookup (
  kind        text        NOT NULL,
  value       text        NOT NULL,
  user_id     uuid        NOT NULL,
  token_id    uuid,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT tenant_lookup_pkey PRIMARY KEY (kind, value),
  CONSTRAINT tenant_lookup_kind_check
    CHECK (kind IN ('email', 'username', 'auth_token', 'email_verification', 'billing_customer')),
  -- E-mail and username case-insensitively (lower()), hashes as lower-case hex SHA-256.
  CONSTRAINT tenant_lookup_value_check CHECK (
    CASE kind
      WHEN 'email' THEN value = lower(value) AND length(value) <= 255
      WHEN 'username' THEN value = lower(value) AND length(value) <= 64
      WHEN 'billing_customer' THEN value ~ '^[A-Za-z0-9_-]{1,255}$'
      ELSE value ~ '^[0-9a-f]{64}$' END),
  CONSTRAINT tenant_lookup_token_id_check CHECK ((kind = 'auth_token') = (token_id IS NOT NULL))
);

-- Backfill: every value a live user or token holds (a closed account holds none: its
-- placeholders are nobody's, users_erased_identity_check).
INSERT INTO keen.tenant_lookup (kind, value, user_id, token_id, created_at)
SELECT 'email', lower(u.email), u.id, NULL::uuid, u.created_at FROM keen.users AS u WHERE u.account_status <> 'deleted'
UNION ALL
SELECT 'username', lower(u.username), u.id, NULL, u.created_at FROM keen.users AS u WHERE u.account_status <> 'deleted'
UNION ALL
SELECT 'email_verification', u.email_verification_token, u.id, NULL, u.created_at
  FROM keen.users AS u WHERE u.email_verification_token IS NOT NULL
UNION ALL
SELECT 'billing_customer', u.billing_customer_id, u.id, NULL, u.created_at
  FROM keen.users AS u WHERE u.billing_customer_id IS NOT NULL
UNION ALL
SELECT 'auth_token', t.token_hash, t.user_id, t.id, t.created_at FROM keen.auth_tokens AS t;

ALTER TABLE keen.tenant_lookup ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.tenant_lookup FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_all ON keen.tenant_lookup FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== the cross-tenant keys go ===========================================================
CREATE UNIQUE INDEX auth_tokens_user_id_token_hash_key ON keen.auth_tokens (user_id, token_hash);
ALTER TABLE keen.auth_tokens DROP CONSTRAINT auth_tokens_token_hash_key;
DROP INDEX keen.users_lower_email_key;
DROP INDEX keen.users_lower_username_key;
DROP INDEX keen.users_billing_customer_id_key;
DROP INDEX keen.users_email_verification_token_idx;

-- ===== triggers that touched other tables =================================================
DROP TRIGGER _900_audit ON keen.users;
DROP FUNCTION keen.tg_users__audit();
DROP TRIGGER _500_rebucket_usage_stats ON keen.users;
DROP FUNCTION keen.tg_users__rebucket_usage_stats();

-- ===== functions ==========================================================================
CREATE FUNCTION keen.lookup_claim(p_kind text, p_value text, p_user_id uuid, p_token_id uuid DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_holder uuid;
BEGIN
  -- The primary key decides: a concurrent claim of the same value waits for this one's
  -- transaction and then does nothing (no exception, so no subtransaction).
  INSERT INTO keen.tenant_lookup (kind, value, user_id, token_id)
  VALUES (p_kind, p_value, p_user_id, p_token_id)
  ON CONFLICT (kind, value) DO NOTHING;
  IF FOUND THEN
    RETURN true;
  END IF;
  -- Already held: by this user (the same e-mail in another case, the same customer id
  -- again) it stays theirs; by anyone else the value is taken.
  SELECT l.user_id INTO v_holder
    FROM keen.tenant_lookup AS l
   WHERE l.kind = p_kind AND l.value = p_value;
  RETURN v_holder IS NOT DISTINCT FROM p_user_id AND p_token_id IS NULL;
END
$$;

CREATE FUNCTION keen.lookup_release(p_kind text, p_value text, p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Only the holder's own entry goes (NULL values hold nothing).
  IF p_value IS NOT NULL THEN
    DELETE FROM keen.tenant_lookup AS l
     WHERE l.kind = p_kind AND l.value = p_value AND l.user_id = p_user_id;
  END IF;
END
$$;

CREATE FUNCTION keen.append_user_audit(p_old keen.users, p_new keen.users, p_actor text, p_action text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_insert boolean := p_old.id IS NULL;
  v_changes jsonb;
  v_ip_text text := nullif(pg_catalog.current_setting('app.client_ip', true), '');
  v_ip inet;
BEGIN
  -- What changed: old and new value per column; secrets only as "changed", never a value.
  SELECT coalesce(pg_catalog.jsonb_object_agg(n.key,
           CASE WHEN n.key IN ('password_hash', 'email_verification_token', 'mfa_secret', 'recovery_codes')
                THEN '{"changed": true}'::jsonb
                WHEN v_insert THEN pg_catalog.jsonb_build_object('new', n.value)
                ELSE pg_catalog.jsonb_build_object('old', o.value, 'new', n.value) END), '{}'::jsonb)
    INTO v_changes
    FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(p_new)) AS n
    LEFT JOIN pg_catalog.jsonb_each(CASE WHEN NOT v_insert THEN pg_catalog.to_jsonb(p_old) END) AS o ON o.key = n.key
   WHERE n.key NOT IN ('id', 'user_id', 'is_admin', 'created_at', 'updated_at')
     AND n.value IS DISTINCT FROM coalesce(o.value, CASE WHEN v_insert THEN 'null'::jsonb END);
  IF v_changes = '{}'::jsonb THEN
    RETURN;  -- nothing but updated_at: no account change
  END IF;
  IF v_ip_text IS NOT NULL THEN
    BEGIN
      v_ip := v_ip_text::inet;
    EXCEPTION WHEN invalid_text_representation THEN
      PERFORM keen.invalid_argument('client IP (app.client_ip)', v_ip_text, 'Set it with keen.set_client_ip().');
    END;
  END IF;
  IF p_new.account_status = 'deleted' THEN
    -- A closed account's own last entry already holds no personal value.
    v_changes := keen.redact_audit_changes(v_changes);
    v_ip := NULL;
  END IF;
  INSERT INTO keen.user_audit_log (user_id, actor, action, changes, ip, actor_role)
  VALUES (p_new.id, p_actor, p_action, v_changes, v_ip, session_user);
END
$$;

CREATE FUNCTION keen.verify_tenant_lookup()
RETURNS TABLE (
  kind               text,
  value              text,
  holder_user_id     uuid,
  lookup_user_id     uuid,
  holder_token_id    uuid,
  lookup_token_id    uuid
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Every value a live user or token holds has its lookup row naming that user (and token),
  -- and every lookup row names the user (and token) holding its value; empty = consistent.
  -- Each side is read once (materialized: on Citus each is one distributed read, the
  -- comparison runs on the coordinator).
  -- all tenants: an operator's consistency check of every held value and every lookup row
  RETURN QUERY
  WITH held AS MATERIALIZED (
    SELECT h.kind, h.value, h.user_id, h.token_id
      FROM (
        SELECT 'email'::text AS kind, pg_catalog.lower(u.email) AS value, u.id AS user_id, NULL::uuid AS token_id
          FROM keen.users AS u WHERE u.account_status <> 'deleted'
        UNION ALL
        SELECT 'username', pg_catalog.lower(u.username), u.id, NULL::uuid
          FROM keen.users AS u WHERE u.account_status <> 'deleted'
        UNION ALL
        SELECT 'email_verification', u.email_verification_token, u.id, NULL::uuid
          FROM keen.users AS u WHERE u.email_verification_token IS NOT NULL
        UNION ALL
        SELECT 'billing_customer', u.billing_customer_id, u.id, NULL::uuid
          FROM keen.users AS u WHERE u.billing_customer_id IS NOT NULL
        UNION ALL
        SELECT 'auth_token', t.token_hash, t.user_id, t.id
          FROM keen.auth_tokens AS t
      ) AS h
  ), listed AS MATERIALIZED (
    SELECT l.kind, l.value, l.user_id, l.token_id FROM keen.tenant_lookup AS l
  )
  SELECT coalesce(h.kind, l.kind), coalesce(h.value, l.value), h.user_id, l.user_id, h.token_id, l.token_id
    FROM held AS h
    FULL JOIN listed AS l ON l.kind = h.kind AND l.value = h.value
   WHERE (h.user_id, h.token_id) IS DISTINCT FROM (l.user_id, l.token_id)
   ORDER BY 1, 2;
END
$$;

CREATE OR REPLACE FUNCTION keen.register_user(
  p_email         text,
  p_username      text,
  p_password_hash text,
  p_display_name  text DEFAULT NULL,
  p_timezone      text DEFAULT 'UTC'
)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := pg_catalog.gen_random_uuid();
  v_user keen.users;
  v_constraint text;
BEGIN
  -- Unauthenticated: every argument is bounded before anything else reads it, and no
  -- message quotes more than a short prefix of a value (keen.text_prefix).
  PERFORM keen.check_text(p_email, 'e-mail', 255, true);
  PERFORM keen.check_text(p_username, 'username', 64, true);
  PERFORM keen.check_text(p_password_hash, 'password hash', 512, true);
  PERFORM keen.check_text(p_display_name, 'display name', 200);
  IF NOT keen.is_time_zone(p_timezone) THEN
    RAISE EXCEPTION 'invalid argument: unknown time zone %', keen.text_prefix(p_timezone)
      USING ERRCODE = 'KE013',
            HINT = 'Use an IANA time zone name such as Europe/Paris or UTC.';
  END IF;
  -- The lookup's primary key decides who holds the e-mail and the username: of two sign-ups
  -- racing for one, the second waits for the first and finds it taken. The message names
  -- the field, never its value (the caller knows it, the server log need not).
  IF NOT keen.lookup_claim('email', pg_catalog.lower(p_email), v_user_id) THEN
    RAISE EXCEPTION 'already exists: the e-mail address is registered'
      USING ERRCODE = 'KE009', DETAIL = 'users_lower_email_key';
  END IF;
  IF NOT keen.lookup_claim('username', pg_catalog.lower(p_username), v_user_id) THEN
    RAISE EXCEPTION 'already exists: the username is taken'
      USING ERRCODE = 'KE009', DETAIL = 'users_lower_username_key';
  END IF;

  INSERT INTO keen.users (id, email, username, password_hash, display_name, timezone)
  VALUES (v_user_id, p_email, p_username, p_password_hash, p_display_name, p_timezone)
  RETURNING * INTO v_user;
  -- Every user has exactly one credit account from the start (defaults: empty, active).
  INSERT INTO keen.credit_accounts (user_id) VALUES (v_user_id);
  PERFORM keen.append_user_audit(NULL, v_user, 'user', 'register_user');
  RETURN v_user_id;
EXCEPTION
  WHEN check_violation THEN
    GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
    RAISE EXCEPTION 'invalid argument: % refused by %', keen.text_prefix(p_email), v_constraint
      USING ERRCODE = 'KE013', DETAIL = v_constraint,
            HINT = 'E-mail must look like name@domain, username 3-64 of [A-Za-z0-9_.-], password hash 20-512 characters.';
END
$$;

CREATE OR REPLACE FUNCTION keen.login_lookup(p_login text)
RETURNS TABLE (
  user_id         uuid,
  password_hash   text,
  mfa_enabled     boolean,
  account_status  text,
  email_verified  boolean
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- An e-mail always holds '@' and a username never does.
  v_kind text := CASE WHEN pg_catalog.strpos(p_login, '@') > 0 THEN 'email' ELSE 'username' END;
  v_value text := pg_catalog.lower(p_login);
  v_user_id uuid;
BEGIN
  -- Two steps: the lookup finds the tenant by the value, then the tenant's own row (one
  -- shard each on Citus).
  SELECT l.user_id INTO v_user_id
    FROM keen.tenant_lookup AS l
   WHERE l.kind = v_kind AND l.value = v_value;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  RETURN QUERY
    SELECT u.id, u.password_hash, u.mfa_enabled, u.account_status, u.email_verified
      FROM keen.users AS u
     WHERE u.id = v_user_id;
END
$$;

CREATE OR REPLACE FUNCTION keen.record_login(p_ip inet DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
BEGIN
  SELECT u.* INTO v_old FROM keen.users AS u WHERE u.id = v_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
  UPDATE keen.users AS u
  SET last_login_at = pg_catalog.now(), last_login_ip = p_ip
  WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'record_login');
  RETURN pg_catalog.now();
END
$$;

CREATE OR REPLACE FUNCTION keen.create_auth_token(
  p_token_type           text,
  p_token_hash           text,
  p_token_name           text DEFAULT NULL,
  p_scopes               text[] DEFAULT '{}',
  p_expires_at           timestamptz DEFAULT NULL,
  p_rate_limit_per_hour  integer DEFAULT 1000,
  p_created_ip           inet DEFAULT NULL,
  p_user_agent           text DEFAULT NULL
)
RETURNS keen.auth_tokens
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_token_id uuid := pg_catalog.gen_random_uuid();
  v_family_id uuid;
  v_status text;
  v_active bigint;
  v_token keen.auth_tokens;
BEGIN
  -- The user's row lock serializes the user's token creations: the count below holds.
  SELECT u.account_status INTO v_status FROM keen.users AS u
   WHERE u.id = v_user_id
     FOR NO KEY UPDATE;
  IF v_status IS NULL THEN
    RAISE EXCEPTION 'not found: user %', v_user_id USING ERRCODE = 'KE006';
  ELSIF v_status <> 'active' THEN
    RAISE EXCEPTION 'account not active: user % is %', v_user_id, v_status USING ERRCODE = 'KE012';
  END IF;
  IF p_token_type IS NULL OR p_token_type NOT IN ('jwt_refresh', 'api_key', 'session') THEN
    RAISE EXCEPTION 'invalid argument: unknown token type %', pg_catalog.quote_nullable(p_token_type)
      USING ERRCODE = 'KE013', HINT = 'One of jwt_refresh, api_key, session.';
  END IF;
  IF p_token_hash IS NULL OR p_token_hash !~ '^[0-9a-f]{64}$' THEN
    RAISE EXCEPTION 'invalid argument: token hash is not a lower-case hex SHA-256'
      USING ERRCODE = 'KE013', HINT = 'Store keen_sql.security.hash_token(token), never the token.';
  END IF;
  IF p_expires_at IS NOT NULL AND p_expires_at <= pg_catalog.now() THEN
    RAISE EXCEPTION 'invalid argument: expiry % is not in the future', p_expires_at USING ERRCODE = 'KE013';
  END IF;
  IF p_rate_limit_per_hour IS NULL OR p_rate_limit_per_hour NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'invalid argument: rate limit per hour % is not between 1 and 10000', p_rate_limit_per_hour
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_text(p_token_name, 'token name', 200);
  PERFORM keen.check_text_array(p_scopes, 'scopes', 64, 128);
  PERFORM keen.check_text(p_user_agent, 'user agent', 512);
  -- Minting tokens must not multiply the hourly limit: at most 100 usable tokens per user.
  SELECT pg_catalog.count(*) INTO v_active FROM keen.auth_tokens AS t
   WHERE t.user_id = v_user_id AND t.revoked_at IS NULL
     AND (t.expires_at IS NULL OR t.expires_at > pg_catalog.now());
  IF v_active >= 100 THEN
    RAISE EXCEPTION 'invalid argument: user already has % active tokens (at most 100)', v_active
      USING ERRCODE = 'KE013', HINT = 'Revoke unused tokens first.';
  END IF;
  -- The hash is unique across tenants: the lookup holds it (and finds the token by it).
  IF NOT keen.lookup_claim('auth_token', p_token_hash, v_user_id, v_token_id) THEN
    RAISE EXCEPTION 'already exists: a token with this hash exists' USING ERRCODE = 'KE009';
  END IF;
  -- A new refresh token starts a new family (one login); rotations stay in it.
  IF p_token_type = 'jwt_refresh' THEN
    v_family_id := pg_catalog.gen_random_uuid();
  END IF;

  INSERT INTO keen.auth_tokens (id, user_id, token_type, token_hash, token_name, scopes, expires_at,
                                rate_limit_per_hour, created_ip, user_agent, family_id)
  VALUES (v_token_id, v_user_id, p_token_type, p_token_hash, p_token_name, coalesce(p_scopes, '{}'),
          p_expires_at, p_rate_limit_per_hour, p_created_ip, p_user_agent, v_family_id)
  RETURNING * INTO v_token;
  RETURN v_token;
EXCEPTION WHEN unique_violation THEN
  RAISE EXCEPTION 'already exists: a token with this hash exists' USING ERRCODE = 'KE009';
END
$$;

CREATE OR REPLACE FUNCTION keen.authenticate_token(p_token_hash text, p_ip inet DEFAULT NULL)
RETURNS TABLE (
  user_id       uuid,
  token_id      uuid,
  token_type    text,
  scopes        text[],
  rate_limited  boolean
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
  v_token_id uuid;
  v_token keen.auth_tokens;
  v_now timestamptz := pg_catalog.now();
  v_fresh_window boolean;
  v_window_start timestamptz;
  v_window_count integer;
BEGIN
  -- Two steps: the lookup finds the tenant and the token by the hash, then the tenant's row.
  SELECT l.user_id, l.token_id INTO v_user_id, v_token_id
    FROM keen.tenant_lookup AS l
   WHERE l.kind = 'auth_token' AND l.value = p_token_hash;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  -- The row lock serializes concurrent uses of one token, so the hourly count is exact.
  SELECT t.* INTO v_token
  FROM keen.auth_tokens AS t
  WHERE t.user_id = v_user_id AND t.id = v_token_id AND t.token_hash = p_token_hash
  FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;

  IF v_token.revoked_at IS NOT NULL THEN
    -- A refresh token that was already rotated is being replayed: whoever holds the
    -- family (thief or owner) loses it. Returning instead of raising keeps this committed.
    IF v_token.token_type = 'jwt_refresh' AND v_token.revoked_reason = 'rotated' THEN
      UPDATE keen.auth_tokens AS t
      SET revoked_at = v_now, revoked_reason = 'reuse_detected'
      WHERE t.user_id = v_user_id AND t.family_id = v_token.family_id AND t.revoked_at IS NULL;
    END IF;
    RETURN;
  END IF;
  IF v_token.expires_at IS NOT NULL AND v_token.expires_at <= v_now THEN
    RETURN;
  END IF;
  PERFORM FROM keen.users AS u WHERE u.id = v_user_id AND u.account_status = 'active';
  IF NOT FOUND THEN
    RETURN;
  END IF;

  v_fresh_window := v_token.rate_window_start IS NULL
                    OR v_token.rate_window_start <= v_now - interval '1 hour';
  IF NOT v_fresh_window AND v_token.rate_window_count >= v_token.rate_limit_per_hour THEN
    -- Over the limit: refused, and not counted as a use.
    RETURN QUERY SELECT v_token.user_id, v_token.id, v_token.token_type, v_token.scopes, true;
    RETURN;
  END IF;
  -- Computed here from the locked row (Citus refuses now() inside a CASE of an UPDATE).
  IF v_fresh_window THEN
    v_window_start := v_now;
    v_window_count := 1;
  ELSE
    v_window_start := v_token.rate_window_start;
    v_window_count := v_token.rate_window_count + 1;
  END IF;

  UPDATE keen.auth_tokens AS t
  SET usage_count = t.usage_count + 1,
      last_used_at = v_now,
      last_used_ip = coalesce(p_ip, t.last_used_ip),
      rate_window_start = v_window_start,
      rate_window_count = v_window_count
  WHERE t.user_id = v_user_id AND t.id = v_token_id;
  RETURN QUERY SELECT v_token.user_id, v_token.id, v_token.token_type, v_token.scopes, false;
END
$$;

CREATE OR REPLACE FUNCTION keen.rotate_refresh_token(
  p_token_hash      text,
  p_new_token_hash  text,
  p_expires_at      timestamptz,
  p_ip              inet DEFAULT NULL,
  p_user_agent      text DEFAULT NULL
)
RETURNS keen.auth_tokens
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_new_id uuid := pg_catalog.gen_random_uuid();
  v_old keen.auth_tokens;
  v_new keen.auth_tokens;
BEGIN
  -- Runs in the tenant context that authenticate_token(p_token_hash) returned: the token
  -- is looked up among the caller's own (auth_tokens_user_id_token_hash_key).
  SELECT t.* INTO v_old
  FROM keen.auth_tokens AS t
  WHERE t.user_id = v_user_id AND t.token_hash = p_token_hash
  FOR UPDATE;
  IF NOT FOUND OR v_old.token_type <> 'jwt_refresh' THEN
    RAISE EXCEPTION 'not found: no refresh token with this hash' USING ERRCODE = 'KE006';
  END IF;
  IF v_old.revoked_reason IN ('rotated', 'reuse_detected') THEN
    -- Lost a race with another rotation of the same token (or its family is gone).
    -- The caller presents the token to authenticate_token again, which revokes the family.
    RAISE EXCEPTION 'refresh token reuse: token % was already rotated', v_old.id
      USING ERRCODE = 'KE011', DETAIL = pg_catalog.format('family %s', v_old.family_id),
            HINT = 'Present the token to authenticate_token to revoke its family; log in again.';
  END IF;
  IF v_old.revoked_at IS NOT NULL OR (v_old.expires_at IS NOT NULL AND v_old.expires_at <= pg_catalog.now()) THEN
    RAISE EXCEPTION 'not found: refresh token % is revoked or expired', v_old.id USING ERRCODE = 'KE006';
  END IF;
  IF p_expires_at IS NULL OR p_expires_at <= pg_catalog.now() THEN
    RAISE EXCEPTION 'invalid argument: expiry % is not in the future', p_expires_at USING ERRCODE = 'KE013';
  END IF;
  IF p_new_token_hash IS NULL OR p_new_token_hash !~ '^[0-9a-f]{64}$' THEN
    RAISE EXCEPTION 'invalid argument: token hash is not a lower-case hex SHA-256' USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_text(p_user_agent, 'user agent', 512);
  IF NOT keen.lookup_claim('auth_token', p_new_token_hash, v_user_id, v_new_id) THEN
    RAISE EXCEPTION 'already exists: a token with this hash exists' USING ERRCODE = 'KE009';
  END IF;

  -- The successor inherits the family, name, scopes and rate limit.
  INSERT INTO keen.auth_tokens (id, user_id, token_type, token_hash, token_name, scopes, expires_at,
                                rate_limit_per_hour, created_ip, user_agent, family_id)
  VALUES (v_new_id, v_user_id, 'jwt_refresh', p_new_token_hash, v_old.token_name, v_old.scopes, p_expires_at,
          v_old.rate_limit_per_hour, p_ip, p_user_agent, v_old.family_id)
  RETURNING * INTO v_new;
  UPDATE keen.auth_tokens AS t
  SET revoked_at = pg_catalog.now(), revoked_reason = 'rotated', replaced_by = v_new.id
  WHERE t.user_id = v_user_id AND t.id = v_old.id;
  RETURN v_new;
EXCEPTION WHEN unique_violation THEN
  RAISE EXCEPTION 'already exists: a token with this hash exists' USING ERRCODE = 'KE009';
END
$$;

CREATE OR REPLACE FUNCTION keen.lock_account(p_user_id uuid, p_by_operator boolean DEFAULT false)
RETURNS keen.users
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user keen.users;
BEGIN
  SELECT u.* INTO v_user FROM keen.users AS u WHERE u.id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: user %', p_user_id USING ERRCODE = 'KE006';
  ELSIF p_by_operator AND v_user.account_status = 'deleted' THEN
    -- Operators and billing may change a suspended user, never an erased one.
    RAISE EXCEPTION 'invalid state transition: user % is closed', p_user_id
      USING ERRCODE = 'KE007', HINT = 'A closed account is erased and never changes again.';
  ELSIF NOT p_by_operator AND v_user.account_status <> 'active' THEN
    -- A user changes their own account only while it is active.
    RAISE EXCEPTION 'account not active: user % is %', p_user_id, v_user.account_status USING ERRCODE = 'KE012';
  END IF;
  RETURN v_user;
END
$$;

CREATE OR REPLACE FUNCTION keen.update_profile(
  p_display_name text DEFAULT NULL,
  p_avatar_url   text DEFAULT NULL,
  p_timezone     text DEFAULT NULL,
  p_preferences  jsonb DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
BEGIN
  -- The bound register_user applies (0009); the column's CHECK (255) also admits the longer
  -- names that sign-up accepted before 0009.
  IF length(p_display_name) > 200 THEN
    PERFORM keen.invalid_argument('display name', p_display_name, 'At most 200 characters; '''' clears it.');
  END IF;
  IF p_avatar_url <> '' AND NOT (length(p_avatar_url) <= 2048 AND p_avatar_url ~ '^https://[^\s]+$') THEN
    PERFORM keen.invalid_argument('avatar URL', p_avatar_url, 'An https:// URL of at most 2048 characters; '''' clears it.');
  END IF;
  IF p_timezone IS NOT NULL AND (length(p_timezone) > 64 OR NOT keen.is_time_zone(p_timezone)) THEN
    PERFORM keen.invalid_argument('unknown time zone', p_timezone, 'Use an IANA time zone name such as Europe/Paris or UTC.');
  END IF;
  IF jsonb_typeof(p_preferences) <> 'object' OR octet_length(p_preferences::text) > 16384 THEN
    PERFORM keen.invalid_argument('preferences', p_preferences::text, 'A JSON object of at most 16 KiB.');
  END IF;
  v_old := keen.lock_account(v_user_id);
  -- NULL leaves a field as it is; '' clears the display name or the avatar.
  UPDATE keen.users AS u
     SET display_name = CASE WHEN p_display_name IS NULL THEN u.display_name ELSE nullif(p_display_name, '') END,
         avatar_url = CASE WHEN p_avatar_url IS NULL THEN u.avatar_url ELSE nullif(p_avatar_url, '') END,
         timezone = coalesce(p_timezone, u.timezone),
         preferences = coalesce(p_preferences, u.preferences)
   WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'update_profile');
  IF v_new.timezone IS DISTINCT FROM v_old.timezone THEN
    -- The day is the user's current day everywhere (stats and spending limits alike): a new
    -- time zone moves the user's whole history to the new day boundaries.
    PERFORM keen.rebuild_usage_stats(v_user_id);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION keen.change_password(p_password_hash text, p_revoke_tokens boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
  v_revoked integer := 0;
BEGIN
  IF p_password_hash IS NULL OR length(p_password_hash) NOT BETWEEN 20 AND 512 THEN
    PERFORM keen.invalid_argument('password hash', NULL, 'Pass keen_sql.security.hash_password(password): 20-512 characters.');
  END IF;
  v_old := keen.lock_account(v_user_id);
  UPDATE keen.users AS u SET password_hash = p_password_hash WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'change_password');
  IF coalesce(p_revoke_tokens, true) THEN
    -- Every login ends: refresh, session and API tokens alike.
    UPDATE keen.auth_tokens AS t
       SET revoked_at = now(), revoked_reason = 'revoked'
     WHERE t.user_id = v_user_id AND t.revoked_at IS NULL;
    GET DIAGNOSTICS v_revoked = ROW_COUNT;
  END IF;
  RETURN v_revoked;
END
$$;

CREATE OR REPLACE FUNCTION keen.start_email_verification(p_token_hash text, p_expires_at timestamptz)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
BEGIN
  PERFORM keen.check_secret_hash('verification token hash', p_token_hash);
  PERFORM keen.check_token_expiry(p_expires_at);
  v_old := keen.lock_account(v_user_id);
  IF v_old.email_verified THEN
    RAISE EXCEPTION 'invalid state transition: the e-mail of user % is already verified', v_user_id
      USING ERRCODE = 'KE007', HINT = 'change_email starts a new verification for a new address.';
  END IF;
  -- A new token replaces a pending one: only the latest link works (the lookup follows).
  IF v_old.email_verification_token IS DISTINCT FROM p_token_hash THEN
    PERFORM keen.lookup_release('email_verification', v_old.email_verification_token, v_user_id);
  END IF;
  IF NOT keen.lookup_claim('email_verification', p_token_hash, v_user_id) THEN
    RAISE EXCEPTION 'already exists: a verification token with this hash exists'
      USING ERRCODE = 'KE009', DETAIL = 'tenant_lookup_pkey';
  END IF;
  UPDATE keen.users AS u
     SET email_verification_token = p_token_hash, email_verification_expires_at = p_expires_at
   WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'start_email_verification');
END
$$;

CREATE OR REPLACE FUNCTION keen.confirm_email(p_token_hash text)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
  v_old keen.users;
  v_new keen.users;
BEGIN
  PERFORM keen.check_secret_hash('verification token hash', p_token_hash);
  -- No tenant yet: the lookup finds the user by the token's hash, then the user's row,
  -- locked, so a token confirms once.
  SELECT l.user_id INTO v_user_id
    FROM keen.tenant_lookup AS l
   WHERE l.kind = 'email_verification' AND l.value = p_token_hash;
  IF FOUND THEN
    SELECT u.* INTO v_old
      FROM keen.users AS u
     WHERE u.id = v_user_id
       AND u.email_verification_token = p_token_hash
       AND u.email_verification_expires_at > now()
       AND u.account_status = 'active'
       FOR UPDATE;
  END IF;
  IF v_old.id IS NULL THEN
    RAISE EXCEPTION 'not found: no pending e-mail verification with this token (unknown, used or expired)'
      USING ERRCODE = 'KE006', HINT = 'Start a new verification.';
  END IF;
  PERFORM keen.lookup_release('email_verification', p_token_hash, v_user_id);
  UPDATE keen.users AS u
     SET email_verified = true, email_verification_token = NULL, email_verification_expires_at = NULL
   WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'confirm_email');
  RETURN v_user_id;
END
$$;

CREATE OR REPLACE FUNCTION keen.change_email(p_email text, p_token_hash text, p_expires_at timestamptz)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
BEGIN
  IF p_email IS NULL OR length(p_email) > 255 OR p_email !~ '^[^@\s]+@[^@\s]+$' OR p_email ~* '@erased\.invalid$' THEN
    PERFORM keen.invalid_argument('e-mail', p_email, 'name@domain, at most 255 characters.');
  END IF;
  PERFORM keen.check_secret_hash('verification token hash', p_token_hash);
  PERFORM keen.check_token_expiry(p_expires_at);
  v_old := keen.lock_account(v_user_id);
  -- The lookup's primary key decides who holds the address, a race included. As in
  -- register_user (0009): the message names the field, never the value.
  IF NOT keen.lookup_claim('email', lower(p_email), v_user_id) THEN
    RAISE EXCEPTION 'already exists: the e-mail address is registered'
      USING ERRCODE = 'KE009', DETAIL = 'users_lower_email_key';
  END IF;
  IF lower(v_old.email) <> lower(p_email) THEN
    PERFORM keen.lookup_release('email', lower(v_old.email), v_user_id);
  END IF;
  IF v_old.email_verification_token IS DISTINCT FROM p_token_hash THEN
    PERFORM keen.lookup_release('email_verification', v_old.email_verification_token, v_user_id);
  END IF;
  IF NOT keen.lookup_claim('email_verification', p_token_hash, v_user_id) THEN
    RAISE EXCEPTION 'already exists: a verification token with this hash exists'
      USING ERRCODE = 'KE009', DETAIL = 'tenant_lookup_pkey';
  END IF;
  -- The new address is the login at once and unverified until its token is confirmed.
  UPDATE keen.users AS u
     SET email = p_email, email_verified = false,
         email_verification_token = p_token_hash, email_verification_expires_at = p_expires_at
   WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'change_email');
END
$$;

CREATE OR REPLACE FUNCTION keen.enroll_mfa(p_secret_ciphertext text, p_recovery_code_hashes text[])
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
BEGIN
  IF p_secret_ciphertext IS NULL OR p_secret_ciphertext !~ '^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9+/_=-]{40,}$'
     OR length(p_secret_ciphertext) > 4160 THEN
    -- Never quoted: it may be a plaintext secret.
    PERFORM keen.invalid_argument('MFA secret ciphertext', NULL,
      'Pass "<key id>:<base64 ciphertext>" encrypted by the service; the database never sees the secret or the key.');
  END IF;
  IF cardinality(p_recovery_code_hashes) IS NULL OR cardinality(p_recovery_code_hashes) NOT BETWEEN 1 AND 20
     OR array_position(p_recovery_code_hashes, NULL) IS NOT NULL
     OR array_to_string(p_recovery_code_hashes, ' ') !~ '^([0-9a-f]{64}( |$))+$'
     OR (SELECT count(DISTINCT h) FROM unnest(p_recovery_code_hashes) AS h) <> cardinality(p_recovery_code_hashes) THEN
    PERFORM keen.invalid_argument('recovery code hashes', NULL,
      '1-20 distinct keen_sql.security.hash_token(code) digests, never the codes.');
  END IF;
  v_old := keen.lock_account(v_user_id);
  IF v_old.mfa_enabled THEN
    RAISE EXCEPTION 'invalid state transition: MFA of user % is enabled', v_user_id
      USING ERRCODE = 'KE007', HINT = 'Disable MFA before enrolling a new secret.';
  END IF;
  -- Pending until enable_mfa(): the service first checks a code made from the new secret.
  UPDATE keen.users AS u
     SET mfa_secret = p_secret_ciphertext, recovery_codes = p_recovery_code_hashes
   WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'enroll_mfa');
END
$$;

CREATE OR REPLACE FUNCTION keen.enable_mfa()
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
BEGIN
  v_old := keen.lock_account(v_user_id);
  IF v_old.mfa_enabled OR v_old.mfa_secret IS NULL THEN
    RAISE EXCEPTION 'invalid state transition: MFA of user % is %', v_user_id,
      CASE WHEN v_old.mfa_enabled THEN 'already enabled' ELSE 'not enrolled' END
      USING ERRCODE = 'KE007', HINT = 'enroll_mfa first, then enable_mfa once a code checks out.';
  END IF;
  UPDATE keen.users AS u SET mfa_enabled = true WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'enable_mfa');
END
$$;

CREATE OR REPLACE FUNCTION keen.disable_mfa()
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
BEGIN
  v_old := keen.lock_account(v_user_id);
  IF v_old.mfa_secret IS NULL THEN
    RAISE EXCEPTION 'invalid state transition: MFA of user % is not enrolled', v_user_id USING ERRCODE = 'KE007';
  END IF;
  -- Also cancels a pending enrolment; the secret and the codes are gone.
  UPDATE keen.users AS u
     SET mfa_enabled = false, mfa_secret = NULL, recovery_codes = NULL
   WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'disable_mfa');
END
$$;

CREATE OR REPLACE FUNCTION keen.get_mfa_secret()
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_user keen.users;
BEGIN
  SELECT u.* INTO v_user FROM keen.users AS u WHERE u.id = v_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: user %', v_user_id USING ERRCODE = 'KE006';
  ELSIF v_user.account_status <> 'active' THEN
    RAISE EXCEPTION 'account not active: user % is %', v_user_id, v_user.account_status USING ERRCODE = 'KE012';
  END IF;
  RETURN v_user.mfa_secret;
END
$$;

CREATE OR REPLACE FUNCTION keen.use_recovery_code(p_code_hash text)
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
BEGIN
  PERFORM keen.check_secret_hash('recovery code hash', p_code_hash);
  v_old := keen.lock_account(v_user_id);
  IF NOT v_old.mfa_enabled THEN
    RAISE EXCEPTION 'invalid state transition: MFA of user % is not enabled', v_user_id USING ERRCODE = 'KE007';
  END IF;
  -- The row lock above makes the removal exact: a code works once, however many race.
  IF array_position(v_old.recovery_codes, p_code_hash) IS NULL THEN
    RAISE EXCEPTION 'not found: no unused recovery code with this hash' USING ERRCODE = 'KE006';
  END IF;
  UPDATE keen.users AS u
     SET recovery_codes = array_remove(u.recovery_codes, p_code_hash)
   WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'use_recovery_code');
  RETURN cardinality(v_new.recovery_codes);
END
$$;

CREATE OR REPLACE FUNCTION keen.close_account()
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_old keen.users;
  v_new keen.users;
  v_token_hashes text[];
BEGIN
  -- The user's row, then the credit account: the locks a new session's reservation and a
  -- new hold wait for, so none can start between the check below and the commit.
  v_old := keen.lock_account(v_user_id);
  PERFORM FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id FOR UPDATE;
  -- Money in flight is settled first: a running session or an active hold still charges.
  PERFORM FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id AND s.execution_status = 'running' LIMIT 1;
  IF NOT FOUND THEN
    PERFORM FROM keen.credit_holds AS h WHERE h.user_id = v_user_id AND h.status = 'active' LIMIT 1;
  END IF;
  IF FOUND THEN
    RAISE EXCEPTION 'invalid state transition: user % has running sessions or active holds', v_user_id
      USING ERRCODE = 'KE007', HINT = 'Complete or cancel the running sessions first.';
  END IF;
  -- Billing stops: no recharge is charged, the credit account moves nothing any more.
  UPDATE keen.recharge_requests AS r
     SET status = 'failed', failure_reason = 'account closed', resolved_at = now()
   WHERE r.user_id = v_user_id AND r.status IN ('pending', 'processing');
  UPDATE keen.credit_accounts AS a
     SET account_status = 'closed', suspended_reason = 'account closed by its user', auto_recharge_enabled = false
   WHERE a.user_id = v_user_id;
  -- Tokens and connections hold addresses and user agents: they go, with their lookups.
  SELECT coalesce(array_agg(t.token_hash), '{}') INTO v_token_hashes
    FROM keen.auth_tokens AS t WHERE t.user_id = v_user_id;
  DELETE FROM keen.tenant_lookup AS l
   WHERE l.kind = 'auth_token' AND l.value = ANY (v_token_hashes) AND l.user_id = v_user_id;
  DELETE FROM keen.auth_tokens AS t WHERE t.user_id = v_user_id;
  DELETE FROM keen.websocket_connections AS c WHERE c.user_id = v_user_id;
  -- Erasure: the e-mail, username, pending verification and billing customer are free for
  -- others (the placeholders derived from the id are nobody's: users_erased_identity_check);
  -- the ledger, sessions and statistics keep the user id, so the history still adds up.
  PERFORM keen.lookup_release('email', lower(v_old.email), v_user_id);
  PERFORM keen.lookup_release('username', lower(v_old.username), v_user_id);
  PERFORM keen.lookup_release('email_verification', v_old.email_verification_token, v_user_id);
  PERFORM keen.lookup_release('billing_customer', v_old.billing_customer_id, v_user_id);
  UPDATE keen.users AS u
     SET email = 'erased-' || replace(v_user_id::text, '-', '') || '@erased.invalid',
         username = 'erased-' || replace(v_user_id::text, '-', ''),
         password_hash = '!closed account: no password',
         display_name = NULL, avatar_url = NULL, preferences = '{}', admin_privileges = '{}', role = 'user',
         email_verified = false, email_verification_token = NULL, email_verification_expires_at = NULL,
         mfa_enabled = false, mfa_secret = NULL, recovery_codes = NULL, billing_customer_id = NULL,
         last_login_ip = NULL, suspended_reason = NULL,
         account_status = 'deleted', subscription_status = 'cancelled'
   WHERE u.id = v_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'user', 'close_account');
  -- The trail keeps every change but no personal value (the one UPDATE its guard allows,
  -- for the account named here: SET LOCAL, so that on Citus the workers' guard sees it too).
  EXECUTE pg_catalog.format('SET LOCAL keen.erasing_user_id = %L', v_user_id);
  UPDATE keen.user_audit_log AS l
     SET changes = keen.redact_audit_changes(l.changes), ip = NULL
   WHERE l.user_id = v_user_id;
END
$$;

CREATE OR REPLACE FUNCTION keen.suspend_user(p_user_id uuid, p_reason text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_old keen.users;
  v_new keen.users;
BEGIN
  PERFORM keen.check_text(p_reason, 'suspension reason', 500, p_required => true);
  v_old := keen.lock_account(p_user_id, p_by_operator => true);
  IF v_old.account_status <> 'active' THEN
    RAISE EXCEPTION 'invalid state transition: user % is %, not active', p_user_id, v_old.account_status
      USING ERRCODE = 'KE007';
  END IF;
  -- Logins and token authentication refuse a suspended user; its tokens survive for reactivation.
  UPDATE keen.users AS u SET account_status = 'suspended', suspended_reason = p_reason
   WHERE u.id = p_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'operator', 'suspend_user');
END
$$;

CREATE OR REPLACE FUNCTION keen.reactivate_user(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_old keen.users;
  v_new keen.users;
BEGIN
  v_old := keen.lock_account(p_user_id, p_by_operator => true);
  IF v_old.account_status <> 'suspended' THEN
    RAISE EXCEPTION 'invalid state transition: user % is %, not suspended', p_user_id, v_old.account_status
      USING ERRCODE = 'KE007';
  END IF;
  UPDATE keen.users AS u SET account_status = 'active', suspended_reason = NULL WHERE u.id = p_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'operator', 'reactivate_user');
END
$$;

CREATE OR REPLACE FUNCTION keen.set_user_role(p_user_id uuid, p_role text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_old keen.users;
  v_new keen.users;
BEGIN
  IF p_role IS NULL OR p_role NOT IN ('user', 'admin', 'super_admin') THEN
    PERFORM keen.invalid_argument('unknown role', p_role, 'One of user, admin, super_admin.');
  END IF;
  v_old := keen.lock_account(p_user_id, p_by_operator => true);
  UPDATE keen.users AS u SET role = p_role WHERE u.id = p_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'operator', 'set_user_role');
END
$$;

CREATE OR REPLACE FUNCTION keen.set_billing(
  p_user_id              uuid,
  p_billing_customer_id  text DEFAULT NULL,
  p_subscription_tier    text DEFAULT NULL,
  p_subscription_status  text DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_old keen.users;
  v_new keen.users;
BEGIN
  IF p_billing_customer_id !~ '^[A-Za-z0-9_-]{1,255}$' THEN
    PERFORM keen.invalid_argument('billing customer id', p_billing_customer_id, '1-255 of [A-Za-z0-9_-], e.g. cus_123.');
  END IF;
  IF p_subscription_tier NOT IN ('individual', 'team', 'enterprise') THEN
    PERFORM keen.invalid_argument('unknown subscription tier', p_subscription_tier, 'One of individual, team, enterprise.');
  END IF;
  IF p_subscription_status NOT IN ('active', 'past_due', 'cancelled') THEN
    PERFORM keen.invalid_argument('unknown subscription status', p_subscription_status, 'One of active, past_due, cancelled.');
  END IF;
  v_old := keen.lock_account(p_user_id, p_by_operator => true);
  IF p_billing_customer_id IS NOT NULL THEN
    -- A billing customer is one user's: the lookup's primary key decides, a race included.
    IF NOT keen.lookup_claim('billing_customer', p_billing_customer_id, p_user_id) THEN
      RAISE EXCEPTION 'already exists: the billing customer id belongs to another user'
        USING ERRCODE = 'KE009', DETAIL = 'users_billing_customer_id_key';
    END IF;
    IF v_old.billing_customer_id <> p_billing_customer_id THEN
      PERFORM keen.lookup_release('billing_customer', v_old.billing_customer_id, p_user_id);
    END IF;
  END IF;
  -- NULL leaves a field as it is.
  UPDATE keen.users AS u
     SET billing_customer_id = coalesce(p_billing_customer_id, u.billing_customer_id),
         subscription_tier = coalesce(p_subscription_tier, u.subscription_tier),
         subscription_status = coalesce(p_subscription_status, u.subscription_status)
   WHERE u.id = p_user_id
  RETURNING u.* INTO v_new;
  PERFORM keen.append_user_audit(v_old, v_new, 'billing', 'set_billing');
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_user_audit_log__append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Touches no table (on Citus it runs on the worker holding the shard): what it needs is in
  -- the row, the trigger depth and the transaction's settings.
  IF keen.in_migration() THEN
    RETURN CASE TG_OP WHEN 'UPDATE' THEN NEW WHEN 'DELETE' THEN OLD END;
  ELSIF TG_OP = 'DELETE' THEN
    IF pg_catalog.pg_trigger_depth() > 1 THEN
      -- Deleted by the foreign key's ON DELETE CASCADE (a trigger): the user itself was
      -- deleted, the trail goes with it. No function deletes audit rows from a trigger.
      RETURN OLD;
    END IF;
  ELSIF TG_OP = 'UPDATE' THEN
    -- The erasure of a closed account: keen.close_account names the account it erases
    -- (SET LOCAL keen.erasing_user_id, after the account is closed, in its transaction).
    IF (NEW.id, NEW.user_id, NEW.actor, NEW.action, NEW.actor_role, NEW.created_at)
         IS NOT DISTINCT FROM (OLD.id, OLD.user_id, OLD.actor, OLD.action, OLD.actor_role, OLD.created_at)
       AND NEW.changes = keen.redact_audit_changes(OLD.changes) AND NEW.ip IS NULL
       AND pg_catalog.current_setting('keen.erasing_user_id', true) = OLD.user_id::text THEN
      RETURN NEW;  -- personal values out, the rest as it was
    END IF;
  END IF;
  RAISE EXCEPTION 'the user audit log is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege', HINT = 'Only a migration changes or removes audit rows.';
END
$$;

-- ===== comments ===========================================================================
COMMENT ON COLUMN keen.users.email IS 'Login e-mail; unique case-insensitively across tenants (keen.tenant_lookup, kind email; KE009 detail users_lower_email_key).';
COMMENT ON COLUMN keen.users.username IS 'Login name; unique case-insensitively across tenants (keen.tenant_lookup, kind username; KE009 detail users_lower_username_key).';
COMMENT ON COLUMN keen.auth_tokens.token_hash IS 'Lower-case hex SHA-256 of the token; unique across tenants (keen.tenant_lookup, kind auth_token).';
COMMENT ON COLUMN keen.users.billing_customer_id IS 'The billing provider''s customer id (e.g. Stripe cus_…); unique across tenants (keen.tenant_lookup); set by keen.set_billing().';
COMMENT ON TABLE keen.user_audit_log IS
  'Append-only trail of every change of a users row, written by the changing function (keen.append_user_audit) in its transaction; no UPDATE, DELETE or TRUNCATE but a migration (and the erasure of a closed account).';
COMMENT ON TABLE keen.tenant_lookup IS
  'Values unique across tenants (e-mail, username, token hashes, billing customer id) -> their user; the uniqueness and the first step of sign-up, login, token authentication, e-mail confirmation and billing. Not readable by keen_app. On Citus distributed by value.';
COMMENT ON COLUMN keen.tenant_lookup.kind IS 'email, username (both lower-cased), auth_token, email_verification (SHA-256 hex) or billing_customer.';
COMMENT ON COLUMN keen.tenant_lookup.value IS 'The unique value: lower(email), lower(username), a token hash or the billing customer id.';
COMMENT ON COLUMN keen.tenant_lookup.user_id IS 'The user holding the value.';
COMMENT ON COLUMN keen.tenant_lookup.token_id IS 'For auth_token: the token (auth_tokens.id) with this hash; NULL otherwise.';
COMMENT ON COLUMN keen.tenant_lookup.created_at IS 'When the value was claimed.';
COMMENT ON FUNCTION keen.lookup_claim(text, text, uuid, uuid) IS
  'Claims a value of keen.tenant_lookup for a user (and token); false when someone else holds it. A concurrent claim waits for the first one''s transaction.';
COMMENT ON FUNCTION keen.lookup_release(text, text, uuid) IS 'Removes a value of keen.tenant_lookup held by the user (nothing for NULL).';
COMMENT ON FUNCTION keen.append_user_audit(keen.users, keen.users, text, text) IS
  'Appends the user_audit_log row of one change of a users row (old row, new row; NULL old for a sign-up), by actor and action; nothing when no column changed. Called by every function that writes users.';
COMMENT ON FUNCTION keen.verify_tenant_lookup() IS
  'Operator check: every value a live user or token holds has its tenant_lookup row naming that user (and token), and every lookup row names its holder; empty = consistent.';

RESET ROLE;
