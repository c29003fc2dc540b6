-- Roll back 0016_tenant_lookup: the users/auth_tokens unique indexes come back (from the
-- tenants' rows), the functions read them again, the audit and rebucket triggers return,
-- and keen.tenant_lookup goes.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';
-- squawk-ignore-file ban-drop-index
-- squawk-ignore-file ban-drop-function
-- squawk-ignore-file require-concurrent-index-deletion
-- squawk-ignore-file require-concurrent-index-creation
-- squawk-ignore-file disallowed-unique-constraint
-- squawk-ignore-file ban-drop-table

CREATE UNIQUE INDEX users_lower_email_key ON keen.users (lower(email));
CREATE UNIQUE INDEX users_lower_username_key ON keen.users (lower(username));
CREATE INDEX users_email_verification_token_idx ON keen.users (email_verification_token)
  WHERE email_verification_token IS NOT NULL;
CREATE UNIQUE INDEX users_billing_customer_id_key ON keen.users (billing_customer_id)
  WHERE billing_customer_id IS NOT NULL;
ALTER TABLE keen.auth_tokens ADD CONSTRAINT auth_tokens_token_hash_key UNIQUE (token_hash);
DROP INDEX keen.auth_tokens_user_id_token_hash_key;

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
  v_user_id uuid;
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
  -- Checked first for a message that says which field is taken (never its value: the
  -- caller knows it, the server log need not); the unique indexes below still decide when
  -- two sign-ups race.
  IF EXISTS (SELECT FROM keen.users AS u WHERE pg_catalog.lower(u.email) = pg_catalog.lower(p_email)) THEN
    RAISE EXCEPTION 'already exists: the e-mail address is registered'
      USING ERRCODE = 'KE009', DETAIL = 'users_lower_email_key';
  END IF;
  IF EXISTS (SELECT FROM keen.users AS u WHERE pg_catalog.lower(u.username) = pg_catalog.lower(p_username)) THEN
    RAISE EXCEPTION 'already exists: the username is taken'
      USING ERRCODE = 'KE009', DETAIL = 'users_lower_username_key';
  END IF;

  INSERT INTO keen.users (email, username, password_hash, display_name, timezone)
  VALUES (p_email, p_username, p_password_hash, p_display_name, p_timezone)
  RETURNING id INTO v_user_id;
  -- Every user has exactly one credit account from the start (defaults: empty, active).
  INSERT INTO keen.credit_accounts (user_id) VALUES (v_user_id);
  RETURN v_user_id;
EXCEPTION
  WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
    RAISE EXCEPTION 'already exists: the e-mail address or username was registered concurrently'
      USING ERRCODE = 'KE009', DETAIL = v_constraint;
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
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  -- An e-mail always holds '@' and a username never does, so at most one row matches.
  SELECT u.id, u.password_hash, u.mfa_enabled, u.account_status, u.email_verified
  FROM keen.users AS u
  WHERE pg_catalog.lower(u.email) = pg_catalog.lower(p_login)
     OR pg_catalog.lower(u.username) = pg_catalog.lower(p_login)
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
BEGIN
  UPDATE keen.users AS u
  SET last_login_at = pg_catalog.now(), last_login_ip = p_ip
  WHERE u.user_id = v_user_id AND u.id = v_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
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
  v_status text;
  v_active bigint;
  v_token keen.auth_tokens;
BEGIN
  -- The user's row lock serializes the user's token creations: the count below holds.
  SELECT u.account_status INTO v_status FROM keen.users AS u
   WHERE u.user_id = v_user_id AND u.id = v_user_id
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

  INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, token_name, scopes, expires_at,
                                rate_limit_per_hour, created_ip, user_agent, family_id)
  VALUES (v_user_id, p_token_type, p_token_hash, p_token_name, coalesce(p_scopes, '{}'),
          p_expires_at, p_rate_limit_per_hour, p_created_ip, p_user_agent,
          -- A new refresh token starts a new family (one login); rotations stay in it.
          CASE WHEN p_token_type = 'jwt_refresh' THEN pg_catalog.gen_random_uuid() END)
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
  v_token keen.auth_tokens;
  v_fresh_window boolean;
BEGIN
  -- The row lock serializes concurrent uses of one token, so the hourly count is exact.
  SELECT t.* INTO v_token
  FROM keen.auth_tokens AS t
  WHERE t.token_hash = p_token_hash
  FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;

  IF v_token.revoked_at IS NOT NULL THEN
    -- A refresh token that was already rotated is being replayed: whoever holds the
    -- family (thief or owner) loses it. Returning instead of raising keeps this committed.
    IF v_token.token_type = 'jwt_refresh' AND v_token.revoked_reason = 'rotated' THEN
      UPDATE keen.auth_tokens AS t
      SET revoked_at = pg_catalog.now(), revoked_reason = 'reuse_detected'
      WHERE t.family_id = v_token.family_id AND t.user_id = v_token.user_id AND t.revoked_at IS NULL;
    END IF;
    RETURN;
  END IF;
  IF v_token.expires_at IS NOT NULL AND v_token.expires_at <= pg_catalog.now() THEN
    RETURN;
  END IF;
  IF NOT EXISTS (SELECT FROM keen.users AS u WHERE u.id = v_token.user_id AND u.account_status = 'active') THEN
    RETURN;
  END IF;

  v_fresh_window := v_token.rate_window_start IS NULL
                    OR v_token.rate_window_start <= pg_catalog.now() - interval '1 hour';
  IF NOT v_fresh_window AND v_token.rate_window_count >= v_token.rate_limit_per_hour THEN
    -- Over the limit: refused, and not counted as a use.
    RETURN QUERY SELECT v_token.user_id, v_token.id, v_token.token_type, v_token.scopes, true;
    RETURN;
  END IF;

  UPDATE keen.auth_tokens AS t
  SET usage_count = t.usage_count + 1,
      last_used_at = pg_catalog.now(),
      last_used_ip = coalesce(p_ip, t.last_used_ip),
      rate_window_start = CASE WHEN v_fresh_window THEN pg_catalog.now() ELSE t.rate_window_start END,
      rate_window_count = CASE WHEN v_fresh_window THEN 1 ELSE t.rate_window_count + 1 END
  WHERE t.id = v_token.id;
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
  v_old keen.auth_tokens;
  v_new keen.auth_tokens;
BEGIN
  -- Runs in the tenant context that authenticate_token(p_token_hash) returned; RLS
  -- limits the lookup to the caller's own tokens.
  SELECT t.* INTO v_old
  FROM keen.auth_tokens AS t
  WHERE t.token_hash = p_token_hash AND t.user_id = v_user_id
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

  -- The successor inherits the family, name, scopes and rate limit.
  INSERT INTO keen.auth_tokens (user_id, token_type, token_hash, token_name, scopes, expires_at,
                                rate_limit_per_hour, created_ip, user_agent, family_id)
  VALUES (v_user_id, 'jwt_refresh', p_new_token_hash, v_old.token_name, v_old.scopes, p_expires_at,
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
  SELECT u.* INTO v_user FROM keen.users AS u WHERE u.user_id = p_user_id FOR UPDATE;
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
  PERFORM keen.lock_account(v_user_id);
  -- NULL leaves a field as it is; '' clears the display name or the avatar.
  UPDATE keen.users AS u
     SET display_name = CASE WHEN p_display_name IS NULL THEN u.display_name ELSE nullif(p_display_name, '') END,
         avatar_url = CASE WHEN p_avatar_url IS NULL THEN u.avatar_url ELSE nullif(p_avatar_url, '') END,
         timezone = coalesce(p_timezone, u.timezone),
         preferences = coalesce(p_preferences, u.preferences)
   WHERE u.user_id = v_user_id;
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
  v_revoked integer := 0;
BEGIN
  IF p_password_hash IS NULL OR length(p_password_hash) NOT BETWEEN 20 AND 512 THEN
    PERFORM keen.invalid_argument('password hash', NULL, 'Pass keen_sql.security.hash_password(password): 20-512 characters.');
  END IF;
  PERFORM keen.lock_account(v_user_id);
  UPDATE keen.users AS u SET password_hash = p_password_hash WHERE u.user_id = v_user_id;
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
  v_user keen.users;
BEGIN
  PERFORM keen.check_secret_hash('verification token hash', p_token_hash);
  PERFORM keen.check_token_expiry(p_expires_at);
  v_user := keen.lock_account(v_user_id);
  IF v_user.email_verified THEN
    RAISE EXCEPTION 'invalid state transition: the e-mail of user % is already verified', v_user_id
      USING ERRCODE = 'KE007', HINT = 'change_email starts a new verification for a new address.';
  END IF;
  -- A new token replaces a pending one: only the latest link works.
  UPDATE keen.users AS u
     SET email_verification_token = p_token_hash, email_verification_expires_at = p_expires_at
   WHERE u.user_id = v_user_id;
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
BEGIN
  PERFORM keen.check_secret_hash('verification token hash', p_token_hash);
  -- No tenant yet: the token's hash finds the user. Locked, so a token confirms once.
  SELECT u.user_id INTO v_user_id
    FROM keen.users AS u
   WHERE u.email_verification_token = p_token_hash
     AND u.email_verification_expires_at > now()
     AND u.account_status = 'active'
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: no pending e-mail verification with this token (unknown, used or expired)'
      USING ERRCODE = 'KE006', HINT = 'Start a new verification.';
  END IF;
  UPDATE keen.users AS u
     SET email_verified = true, email_verification_token = NULL, email_verification_expires_at = NULL
   WHERE u.user_id = v_user_id;
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
BEGIN
  IF p_email IS NULL OR length(p_email) > 255 OR p_email !~ '^[^@\s]+@[^@\s]+$' OR p_email ~* '@erased\.invalid$' THEN
    PERFORM keen.invalid_argument('e-mail', p_email, 'name@domain, at most 255 characters.');
  END IF;
  PERFORM keen.check_secret_hash('verification token hash', p_token_hash);
  PERFORM keen.check_token_expiry(p_expires_at);
  PERFORM keen.lock_account(v_user_id);
  -- Checked first for a message that says the address is taken; the unique index still
  -- decides a race.
  IF EXISTS (SELECT FROM keen.users AS u WHERE lower(u.email) = lower(p_email) AND u.user_id <> v_user_id) THEN
    -- As in register_user (0009): the message names the field, never the value.
    RAISE EXCEPTION 'already exists: the e-mail address is registered'
      USING ERRCODE = 'KE009', DETAIL = 'users_lower_email_key';
  END IF;
  -- The new address is the login at once and unverified until its token is confirmed.
  UPDATE keen.users AS u
     SET email = p_email, email_verified = false,
         email_verification_token = p_token_hash, email_verification_expires_at = p_expires_at
   WHERE u.user_id = v_user_id;
EXCEPTION WHEN unique_violation THEN
  RAISE EXCEPTION 'already exists: the e-mail address was registered concurrently'
    USING ERRCODE = 'KE009', DETAIL = 'users_lower_email_key';
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
  v_user keen.users;
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
  v_user := keen.lock_account(v_user_id);
  IF v_user.mfa_enabled THEN
    RAISE EXCEPTION 'invalid state transition: MFA of user % is enabled', v_user_id
      USING ERRCODE = 'KE007', HINT = 'Disable MFA before enrolling a new secret.';
  END IF;
  -- Pending until enable_mfa(): the service first checks a code made from the new secret.
  UPDATE keen.users AS u
     SET mfa_secret = p_secret_ciphertext, recovery_codes = p_recovery_code_hashes
   WHERE u.user_id = v_user_id;
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
  v_user keen.users;
BEGIN
  v_user := keen.lock_account(v_user_id);
  IF v_user.mfa_enabled OR v_user.mfa_secret IS NULL THEN
    RAISE EXCEPTION 'invalid state transition: MFA of user % is %', v_user_id,
      CASE WHEN v_user.mfa_enabled THEN 'already enabled' ELSE 'not enrolled' END
      USING ERRCODE = 'KE007', HINT = 'enroll_mfa first, then enable_mfa once a code checks out.';
  END IF;
  UPDATE keen.users AS u SET mfa_enabled = true WHERE u.user_id = v_user_id;
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
  v_user keen.users;
BEGIN
  v_user := keen.lock_account(v_user_id);
  IF v_user.mfa_secret IS NULL THEN
    RAISE EXCEPTION 'invalid state transition: MFA of user % is not enrolled', v_user_id USING ERRCODE = 'KE007';
  END IF;
  -- Also cancels a pending enrolment; the secret and the codes are gone.
  UPDATE keen.users AS u
     SET mfa_enabled = false, mfa_secret = NULL, recovery_codes = NULL
   WHERE u.user_id = v_user_id;
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
  SELECT u.* INTO v_user FROM keen.users AS u WHERE u.user_id = v_user_id;
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
  v_user keen.users;
  v_left integer;
BEGIN
  PERFORM keen.check_secret_hash('recovery code hash', p_code_hash);
  v_user := keen.lock_account(v_user_id);
  IF NOT v_user.mfa_enabled THEN
    RAISE EXCEPTION 'invalid state transition: MFA of user % is not enabled', v_user_id USING ERRCODE = 'KE007';
  END IF;
  -- The row lock above makes the removal exact: a code works once, however many race.
  UPDATE keen.users AS u
     SET recovery_codes = array_remove(u.recovery_codes, p_code_hash)
   WHERE u.user_id = v_user_id AND p_code_hash = ANY (u.recovery_codes)
  RETURNING cardinality(u.recovery_codes) INTO v_left;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: no unused recovery code with this hash' USING ERRCODE = 'KE006';
  END IF;
  RETURN v_left;
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
BEGIN
  -- The user's row, then the credit account: the locks a new session's reservation and a
  -- new hold wait for, so none can start between the check below and the commit.
  PERFORM keen.lock_account(v_user_id);
  PERFORM FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id FOR UPDATE;
  -- Money in flight is settled first: a running session or an active hold still charges.
  IF EXISTS (SELECT FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id AND s.execution_status = 'running')
     OR EXISTS (SELECT FROM keen.credit_holds AS h WHERE h.user_id = v_user_id AND h.status = 'active') THEN
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
  -- Tokens and connections hold addresses and user agents: they go.
  DELETE FROM keen.auth_tokens AS t WHERE t.user_id = v_user_id;
  DELETE FROM keen.websocket_connections AS c WHERE c.user_id = v_user_id;
  -- Erasure: placeholders derived from the id free the e-mail and username; the ledger,
  -- sessions and statistics keep the user id, so the history still adds up.
  UPDATE keen.users AS u
     SET email = 'erased-' || replace(v_user_id::text, '-', '') || '@erased.invalid',
         username = 'erased-' || replace(v_user_id::text, '-', ''),
         password_hash = '!closed account: no password',
         display_name = NULL, avatar_url = NULL, preferences = '{}', admin_privileges = '{}', role = 'user',
         email_verified = false, email_verification_token = NULL, email_verification_expires_at = NULL,
         mfa_enabled = false, mfa_secret = NULL, recovery_codes = NULL, billing_customer_id = NULL,
         last_login_ip = NULL, suspended_reason = NULL,
         account_status = 'deleted', subscription_status = 'cancelled'
   WHERE u.user_id = v_user_id;
  -- The trail keeps every change but no personal value (the one UPDATE its guard allows).
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
  v_user keen.users;
BEGIN
  PERFORM keen.check_text(p_reason, 'suspension reason', 500, p_required => true);
  v_user := keen.lock_account(p_user_id, p_by_operator => true);
  IF v_user.account_status <> 'active' THEN
    RAISE EXCEPTION 'invalid state transition: user % is %, not active', p_user_id, v_user.account_status
      USING ERRCODE = 'KE007';
  END IF;
  -- Logins and token authentication refuse a suspended user; its tokens survive for reactivation.
  UPDATE keen.users AS u SET account_status = 'suspended', suspended_reason = p_reason
   WHERE u.user_id = p_user_id;
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
  v_user keen.users;
BEGIN
  v_user := keen.lock_account(p_user_id, p_by_operator => true);
  IF v_user.account_status <> 'suspended' THEN
    RAISE EXCEPTION 'invalid state transition: user % is %, not suspended', p_user_id, v_user.account_status
      USING ERRCODE = 'KE007';
  END IF;
  UPDATE keen.users AS u SET account_status = 'active', suspended_reason = NULL WHERE u.user_id = p_user_id;
END
$$;

CREATE OR REPLACE FUNCTION keen.set_user_role(p_user_id uuid, p_role text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_role IS NULL OR p_role NOT IN ('user', 'admin', 'super_admin') THEN
    PERFORM keen.invalid_argument('unknown role', p_role, 'One of user, admin, super_admin.');
  END IF;
  PERFORM keen.lock_account(p_user_id, p_by_operator => true);
  UPDATE keen.users AS u SET role = p_role WHERE u.user_id = p_user_id;
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
  PERFORM keen.lock_account(p_user_id, p_by_operator => true);
  -- NULL leaves a field as it is.
  UPDATE keen.users AS u
     SET billing_customer_id = coalesce(p_billing_customer_id, u.billing_customer_id),
         subscription_tier = coalesce(p_subscription_tier, u.subscription_tier),
         subscription_status = coalesce(p_subscription_status, u.subscription_status)
   WHERE u.user_id = p_user_id;
EXCEPTION WHEN unique_violation THEN
  RAISE EXCEPTION 'already exists: the billing customer id belongs to another user'
    USING ERRCODE = 'KE009', DETAIL = 'users_billing_customer_id_key';
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_user_audit_log__append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF keen.in_migration() THEN
    RETURN CASE TG_OP WHEN 'UPDATE' THEN NEW WHEN 'DELETE' THEN OLD END;
  ELSIF TG_OP = 'DELETE' THEN
    IF NOT EXISTS (SELECT FROM keen.users AS u WHERE u.id = OLD.user_id AND u.user_id = OLD.user_id) THEN
      RETURN OLD;  -- the user itself was deleted (ON DELETE CASCADE): the trail goes with it
    END IF;
  ELSIF TG_OP = 'UPDATE' THEN
    IF (NEW.id, NEW.user_id, NEW.actor, NEW.action, NEW.actor_role, NEW.created_at)
         IS NOT DISTINCT FROM (OLD.id, OLD.user_id, OLD.actor, OLD.action, OLD.actor_role, OLD.created_at)
       AND NEW.changes = keen.redact_audit_changes(OLD.changes) AND NEW.ip IS NULL
       AND EXISTS (SELECT FROM keen.users AS u WHERE u.id = OLD.user_id AND u.user_id = OLD.user_id
                                                  AND u.account_status = 'deleted') THEN
      RETURN NEW;  -- erasure of a closed account: personal values out, the rest as it was
    END IF;
  END IF;
  RAISE EXCEPTION 'the user audit log is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege', HINT = 'Only a migration changes or removes audit rows.';
END
$$;

CREATE FUNCTION keen.tg_users__audit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_stack text;
  v_fn text;
  v_actor text;
  v_action text;
  v_changes jsonb;
  v_ip_text text := nullif(current_setting('app.client_ip', true), '');
  v_ip inet;
BEGIN
  -- What changed: old and new value per column; secrets only as "changed", never a value.
  SELECT coalesce(jsonb_object_agg(n.key,
           CASE WHEN n.key IN ('password_hash', 'email_verification_token', 'mfa_secret', 'recovery_codes')
                THEN '{"changed": true}'::jsonb
                WHEN TG_OP = 'INSERT' THEN jsonb_build_object('new', n.value)
                ELSE jsonb_build_object('old', o.value, 'new', n.value) END), '{}'::jsonb)
    INTO v_changes
    FROM jsonb_each(to_jsonb(NEW)) AS n
    LEFT JOIN jsonb_each(CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END) AS o ON o.key = n.key
   WHERE n.key NOT IN ('id', 'user_id', 'is_admin', 'created_at', 'updated_at')
     AND n.value IS DISTINCT FROM coalesce(o.value, CASE WHEN TG_OP = 'INSERT' THEN 'null'::jsonb END);
  IF v_changes = '{}'::jsonb THEN
    RETURN NULL;  -- nothing but updated_at: no account change
  END IF;

  -- Who: the nearest keen function on the call stack (keen_app cannot create functions, and
  -- since 0009 holds no write privilege on users: only SECURITY DEFINER functions write it).
  GET DIAGNOSTICS v_stack = PG_CONTEXT;
  v_fn := substring(v_stack FROM 'PL/pgSQL function keen\.((?!tg_)[a-z_0-9]+)\(');
  IF v_changes - 'last_login_at' - 'last_login_ip' = '{}'::jsonb THEN
    -- Only the login stamps changed: a login (keen.record_login), whatever the stack says.
    v_actor := 'user';
    v_action := 'record_login';
  ELSIF v_fn IS NOT NULL THEN
    v_action := v_fn;
    v_actor := CASE
      WHEN v_fn IN ('suspend_user', 'reactivate_user', 'set_user_role') THEN 'operator'
      WHEN v_fn = 'set_billing' THEN 'billing'
      WHEN v_fn IN ('register_user', 'record_login', 'update_profile', 'change_password', 'start_email_verification',
                    'confirm_email', 'change_email', 'enroll_mfa', 'enable_mfa', 'disable_mfa',
                    'use_recovery_code', 'close_account') THEN 'user'
      ELSE 'system' END;
  ELSE
    -- A direct write: by a service login (for its tenant or not), else by an operator.
    v_action := CASE TG_OP WHEN 'INSERT' THEN 'direct_insert' ELSE 'direct_update' END;
    v_actor := CASE
      WHEN NOT coalesce((SELECT NOT r.rolsuper AND pg_has_role(r.oid, 'keen_app', 'MEMBER')
                           FROM pg_roles AS r WHERE r.rolname = session_user), false) THEN 'operator'
      WHEN keen.current_user_id() IS NOT DISTINCT FROM NEW.user_id THEN 'user'
      ELSE 'service' END;
  END IF;

  IF v_ip_text IS NOT NULL THEN
    BEGIN
      v_ip := v_ip_text::inet;
    EXCEPTION WHEN invalid_text_representation THEN
      PERFORM keen.invalid_argument('client IP (app.client_ip)', v_ip_text, 'Set it with keen.set_client_ip().');
    END;
  END IF;
  IF NEW.account_status = 'deleted' THEN
    -- A closed account's own last entry already holds no personal value.
    v_changes := keen.redact_audit_changes(v_changes);
    v_ip := NULL;
  END IF;
  INSERT INTO keen.user_audit_log (user_id, actor, action, changes, ip, actor_role)
  VALUES (NEW.user_id, v_actor, v_action, v_changes, v_ip, session_user);
  RETURN NULL;
END
$$;

CREATE FUNCTION keen.tg_users__rebucket_usage_stats()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- The day is the user's current day everywhere (stats and spending limits alike): a new
  -- time zone moves the user's whole history to the new day boundaries.
  PERFORM keen.rebuild_usage_stats(NEW.id);
  RETURN NULL;
END
$$;

-- After every other trigger of the row: the audit sees the values that are stored.
CREATE TRIGGER _900_audit AFTER INSERT OR UPDATE ON keen.users
  FOR EACH ROW EXECUTE FUNCTION keen.tg_users__audit();
CREATE TRIGGER _500_rebucket_usage_stats AFTER UPDATE OF timezone ON keen.users
  FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone)
  EXECUTE FUNCTION keen.tg_users__rebucket_usage_stats();

DROP FUNCTION keen.lookup_claim(text, text, uuid, uuid);
DROP FUNCTION keen.lookup_release(text, text, uuid);
DROP FUNCTION keen.append_user_audit(keen.users, keen.users, text, text);
DROP FUNCTION keen.verify_tenant_lookup();
DROP TABLE keen.tenant_lookup;

COMMENT ON COLUMN keen.users.email IS 'Login e-mail; unique case-insensitively (users_lower_email_key).';
COMMENT ON COLUMN keen.users.username IS 'Login name; unique case-insensitively (users_lower_username_key).';
COMMENT ON COLUMN keen.auth_tokens.token_hash IS 'Lower-case hex SHA-256 of the token; globally unique.';
COMMENT ON COLUMN keen.users.billing_customer_id IS 'The billing provider''s customer id (e.g. Stripe cus_…); unique; set by keen.set_billing().';
COMMENT ON TABLE keen.user_audit_log IS
  'Append-only trail of every change of a users row, written by the trigger _900_audit in the changing transaction; no UPDATE, DELETE or TRUNCATE but a migration (and the erasure of a closed account).';
COMMENT ON FUNCTION keen.tg_users__audit() IS
  'Trigger (SECURITY DEFINER): appends one user_audit_log row per changed users row, naming the actor and the function that made the change.';
COMMENT ON FUNCTION keen.tg_users__rebucket_usage_stats() IS
  'Trigger: rebuilds a user''s daily_usage_stats when the time zone (the day boundaries) changes.';

RESET ROLE;
