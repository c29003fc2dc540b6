-- Users and their API/refresh/session tokens.
SET ROLE keen_owner;

-- ===== tables ================================================================
CREATE TABLE keen.users (
  id                        uuid        NOT NULL DEFAULT gen_random_uuid(),
  -- The tenant key, the same on every tenant table (RLS, composite keys, distribution).
  user_id                   uuid        NOT NULL GENERATED ALWAYS AS (id) STORED,
  email                     text        NOT NULL,
  username                  text        NOT NULL,
  password_hash             text        NOT NULL,
  display_name              text,
  role                      text        NOT NULL DEFAULT 'user',
  is_admin                  boolean     NOT NULL GENERATED ALWAYS AS (role IN ('admin', 'super_admin')) STORED,
  admin_privileges          jsonb       NOT NULL DEFAULT '{}',
  email_verified            boolean     NOT NULL DEFAULT false,
  email_verification_token  text,
  account_status            text        NOT NULL DEFAULT 'active',
  mfa_enabled               boolean     NOT NULL DEFAULT false,
  mfa_secret                text,
  recovery_codes            text[],
  timezone                  text        NOT NULL DEFAULT 'UTC',
  preferences               jsonb       NOT NULL DEFAULT '{}',
  subscription_tier         text        NOT NULL DEFAULT 'individual',
  subscription_status       text        NOT NULL DEFAULT 'active',
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now(),
  last_login_at             timestamptz,
  last_login_ip             inet,
  avatar_url                text,
  billing_customer_id       text,
  email_verification_expires_at timestamptz,
  suspended_reason          text,
  CONSTRAINT users_pkey PRIMARY KEY (id),
  CONSTRAINT users_email_check CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 255),
  CONSTRAINT users_username_check CHECK (username ~ '^[A-Za-z0-9_.-]{3,64}$'),
  CONSTRAINT users_password_hash_check CHECK (length(password_hash) BETWEEN 20 AND 512),
  CONSTRAINT users_role_check CHECK (role IN ('user', 'admin', 'super_admin')),
  CONSTRAINT users_account_status_check CHECK (account_status IN ('active', 'suspended', 'deleted')),
  CONSTRAINT users_subscription_tier_check CHECK (subscription_tier IN ('individual', 'team', 'enterprise')),
  CONSTRAINT users_subscription_status_check CHECK (subscription_status IN ('active', 'past_due', 'cancelled')),
  CONSTRAINT users_timezone_check CHECK (length(timezone) BETWEEN 1 AND 64),
  -- Columns that could contradict each other are tied together.
  CONSTRAINT users_mfa_check CHECK (NOT mfa_enabled OR mfa_secret IS NOT NULL),
  CONSTRAINT users_email_verification_check CHECK (NOT (email_verified AND email_verification_token IS NOT NULL)),
  CONSTRAINT users_avatar_url_check CHECK (avatar_url ~ '^https://[^\s]+$' AND length(avatar_url) <= 2048),
  CONSTRAINT users_billing_customer_id_check CHECK (billing_customer_id ~ '^[A-Za-z0-9_-]{1,255}$'),
  CONSTRAINT users_display_name_check CHECK (length(display_name) <= 255),
  CONSTRAINT users_preferences_check
    CHECK (jsonb_typeof(preferences) = 'object' AND octet_length(preferences::text) <= 16384),
  CONSTRAINT users_suspended_reason_check
    CHECK (suspended_reason IS NULL OR (account_status = 'suspended' AND length(suspended_reason) BETWEEN 1 AND 500)),
  -- Secrets at rest: a verification token and recovery codes only as SHA-256 hex digests, the
  -- MFA secret only as the service's ciphertext ("<key id>:<base64>", too long for a bare
  -- TOTP secret); a pending token always has its expiry.
  CONSTRAINT users_email_verification_token_check CHECK (email_verification_token ~ '^[0-9a-f]{64}$'),
  CONSTRAINT users_email_verification_expires_at_check
    CHECK ((email_verification_token IS NULL) = (email_verification_expires_at IS NULL)),
  CONSTRAINT users_mfa_secret_check
    CHECK (mfa_secret ~ '^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9+/_=-]{40,}$' AND length(mfa_secret) <= 4160),
  CONSTRAINT users_recovery_codes_check
    CHECK (cardinality(recovery_codes) <= 20 AND array_position(recovery_codes, NULL) IS NULL
           AND array_to_string(recovery_codes, ' ') ~ '^([0-9a-f]{64}( |$))*$'),
  -- The placeholders a closed account gets are never anyone else's e-mail or username.
  CONSTRAINT users_erased_identity_check
    CHECK (account_status = 'deleted'
           OR (email !~* '@erased\.invalid$' AND username !~ '^erased-[0-9a-f]{32}$'))
);

CREATE TABLE keen.auth_tokens (
  id                   uuid        NOT NULL DEFAULT gen_random_uuid(),
  user_id              uuid        NOT NULL,
  token_type           text        NOT NULL,
  token_hash           text        NOT NULL,
  token_name           text,
  scopes               text[]      NOT NULL DEFAULT '{}',
  expires_at           timestamptz,
  last_used_at         timestamptz,
  usage_count          bigint      NOT NULL DEFAULT 0,
  created_ip           inet,
  last_used_ip         inet,
  user_agent           text,
  revoked_at           timestamptz,
  -- Why the token stopped working: revoked by its owner, rotated, or its family revoked
  -- because an already rotated refresh token was presented again.
  revoked_reason       text,
  is_active            boolean     NOT NULL GENERATED ALWAYS AS (revoked_at IS NULL) STORED,
  rate_limit_per_hour  integer     NOT NULL DEFAULT 1000,
  -- Fixed hourly window of the rate limit: its start and the uses counted in it.
  rate_window_start    timestamptz,
  rate_window_count    integer     NOT NULL DEFAULT 0,
  -- Refresh-token rotation: every token of one login shares a family; a rotated token
  -- points at its successor.
  family_id            uuid,
  replaced_by          uuid,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT auth_tokens_pkey PRIMARY KEY (user_id, id),
  CONSTRAINT auth_tokens_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  CONSTRAINT auth_tokens_replaced_by_fkey FOREIGN KEY (user_id, replaced_by)
    REFERENCES keen.auth_tokens (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT auth_tokens_token_type_check CHECK (token_type IN ('jwt_refresh', 'api_key', 'session')),
  CONSTRAINT auth_tokens_token_hash_check CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  CONSTRAINT auth_tokens_usage_count_check CHECK (usage_count >= 0),
  CONSTRAINT auth_tokens_rate_limit_per_hour_check CHECK (rate_limit_per_hour > 0),
  CONSTRAINT auth_tokens_rate_window_count_check CHECK (rate_window_count >= 0),
  CONSTRAINT auth_tokens_expires_at_check CHECK (expires_at IS NULL OR expires_at > created_at),
  CONSTRAINT auth_tokens_family_check CHECK ((token_type = 'jwt_refresh') = (family_id IS NOT NULL)),
  CONSTRAINT auth_tokens_replaced_by_check CHECK (replaced_by IS NULL OR revoked_at IS NOT NULL),
  CONSTRAINT auth_tokens_revoked_reason_check CHECK (
    (revoked_at IS NULL) = (revoked_reason IS NULL)
    AND revoked_reason IN ('revoked', 'rotated', 'reuse_detected'))
);

CREATE TABLE keen.user_audit_log (
  id          bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
  user_id     uuid        NOT NULL,
  actor       text        NOT NULL,
  action      text        NOT NULL,
  changes     jsonb       NOT NULL,
  ip          inet,
  actor_role  text        NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT user_audit_log_pkey PRIMARY KEY (user_id, id),
  -- A user deleted outright (no ledger yet) takes its trail along; a closed one keeps it.
  CONSTRAINT user_audit_log_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  CONSTRAINT user_audit_log_actor_check CHECK (actor IN ('user', 'operator', 'billing', 'service', 'system')),
  CONSTRAINT user_audit_log_action_check CHECK (action ~ '^[a-z_]{1,64}$'),
  CONSTRAINT user_audit_log_changes_check CHECK (jsonb_typeof(changes) = 'object')
);

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

-- ===== indexes ===============================================================
CREATE INDEX auth_tokens_user_id_created_at_idx ON keen.auth_tokens (user_id, created_at DESC);
CREATE INDEX auth_tokens_user_id_family_id_idx ON keen.auth_tokens (user_id, family_id)
  WHERE family_id IS NOT NULL;
-- rotate_refresh_token finds the caller's token by its hash (unique across tenants through
-- keen.tenant_lookup; per tenant here).
CREATE UNIQUE INDEX auth_tokens_user_id_token_hash_key ON keen.auth_tokens (user_id, token_hash);

-- ===== functions =============================================================
CREATE FUNCTION keen.is_time_zone(p_name text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_probe timestamp;
BEGIN
  -- IANA names are Area/Location; POSIX offsets ('UTC+5', '+05:00') and abbreviations
  -- ('PDT') are accepted by AT TIME ZONE but are not zones, so they never get this far.
  IF p_name IS NULL OR pg_catalog.length(p_name) > 64
     OR p_name !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$' THEN
    RETURN false;
  END IF;
  -- Files of the tz database that are not zones: the server's own local time (whatever the
  -- host says), the "Factory" placeholder, the POSIX rules template, and the mirrored trees.
  IF p_name IN ('localtime', 'posixrules', 'Factory', 'posix', 'right')
     OR p_name ~ '^(posix|right|SystemV)/' THEN
    RETURN false;
  END IF;
  IF p_name IN ('UTC', 'Etc/UTC', 'GMT') THEN
    RETURN true;  -- the common case, without the catalog scan below
  ELSIF pg_catalog.strpos(p_name, '/') = 0 THEN
    -- The few zones without a slash (UTC, GMT, EST5EDT, Japan…): the slow catalog scan.
    RETURN EXISTS (SELECT FROM pg_catalog.pg_timezone_names AS z WHERE z.name = p_name);
  END IF;
  v_probe := pg_catalog.now() AT TIME ZONE p_name;
  RETURN v_probe IS NOT NULL;
EXCEPTION WHEN invalid_parameter_value THEN
  RETURN false;
END
$$;

CREATE FUNCTION keen.register_user(
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

CREATE FUNCTION keen.login_lookup(p_login text)
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

CREATE FUNCTION keen.record_login(p_ip inet DEFAULT NULL)
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

CREATE FUNCTION keen.create_auth_token(
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

CREATE FUNCTION keen.authenticate_token(p_token_hash text, p_ip inet DEFAULT NULL)
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

CREATE FUNCTION keen.rotate_refresh_token(
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

CREATE FUNCTION keen.revoke_token(p_token_id uuid)
RETURNS keen.auth_tokens
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_token keen.auth_tokens;
BEGIN
  SELECT t.* INTO v_token
  FROM keen.auth_tokens AS t
  WHERE t.id = p_token_id AND t.user_id = v_user_id
  FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: token %', p_token_id USING ERRCODE = 'KE006';
  END IF;
  IF v_token.revoked_at IS NOT NULL THEN
    RETURN v_token;  -- already revoked: revoking again changes nothing
  END IF;
  -- Revoking a refresh token ends its whole login: every active token of its family.
  UPDATE keen.auth_tokens AS t
  SET revoked_at = pg_catalog.now(), revoked_reason = 'revoked'
  WHERE t.user_id = v_user_id AND t.revoked_at IS NULL
    AND (t.id = p_token_id OR (v_token.family_id IS NOT NULL AND t.family_id = v_token.family_id));
  SELECT t.* INTO v_token FROM keen.auth_tokens AS t WHERE t.user_id = v_user_id AND t.id = p_token_id;
  RETURN v_token;
END
$$;

CREATE FUNCTION keen.tg_auth_tokens__guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Revocation is final: a revoked token never works again, whoever updates it.
  IF OLD.revoked_at IS NOT NULL
     AND (NEW.revoked_at, NEW.revoked_reason, NEW.replaced_by)
         IS DISTINCT FROM (OLD.revoked_at, OLD.revoked_reason, OLD.replaced_by) THEN
    RAISE EXCEPTION 'token % is revoked (%): revocation is final', OLD.id, OLD.revoked_reason
      USING ERRCODE = 'insufficient_privilege', HINT = 'Issue a new token instead.';
  END IF;
  RETURN NEW;
END
$$;

-- Helpers (executed only inside the SECURITY DEFINER functions below, as keen_owner) -------

CREATE FUNCTION keen.invalid_argument(p_what text, p_value text, p_hint text)
RETURNS void
LANGUAGE plpgsql
VOLATILE  -- it raises: never folded into a plan as a constant
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Quotes the value as keen.text_prefix does (at most 24 characters): enough to recognise
  -- it, never a whole secret (callers pass NULL for a value never to be shown).
  RAISE EXCEPTION 'invalid argument: %', p_what || CASE WHEN p_value IS NULL THEN '' ELSE ' ' || keen.text_prefix(p_value) END
    USING ERRCODE = 'KE013', HINT = p_hint;
END
$$;

CREATE FUNCTION keen.check_secret_hash(p_what text, p_hash text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_hash IS NULL OR p_hash !~ '^[0-9a-f]{64}$' THEN
    -- Never quotes the value: it may be the plaintext the caller forgot to hash.
    PERFORM keen.invalid_argument(p_what, NULL, 'Pass keen_sql.security.hash_token(value): 64 lower-case hex digits, never the value.');
  END IF;
END
$$;

CREATE FUNCTION keen.check_token_expiry(p_expires_at timestamptz)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_expires_at IS NULL OR p_expires_at <= now() OR p_expires_at > now() + interval '30 days' THEN
    PERFORM keen.invalid_argument('token expiry', p_expires_at::text, 'A verification token expires within 30 days from now.');
  END IF;
END
$$;

CREATE FUNCTION keen.lock_account(p_user_id uuid, p_by_operator boolean DEFAULT false)
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

CREATE FUNCTION keen.redact_audit_changes(p_changes jsonb)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  -- The personal fields' values give way to a marker; which field changed, and the
  -- non-personal values (statuses, role, tier, flags), stay. Applying it twice changes nothing.
  SELECT coalesce(jsonb_object_agg(c.key,
           CASE WHEN c.key = ANY (ARRAY['email', 'username', 'display_name', 'avatar_url', 'preferences',
                                        'billing_customer_id', 'last_login_ip', 'suspended_reason'])
                THEN '{"erased": true}'::jsonb ELSE c.value END), '{}'::jsonb)
  FROM jsonb_each(p_changes) AS c
$$;

-- The cross-tenant lookup and the audit trail (inside the SECURITY DEFINER functions) --------

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

-- The caller's account (tenant context, SECURITY DEFINER) -------------------------------------

CREATE FUNCTION keen.set_client_ip(p_ip inet)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Transaction-local like the tenant: the audit trail records it for this transaction only.
  PERFORM set_config('app.client_ip', coalesce(p_ip::text, ''), true);
END
$$;

CREATE FUNCTION keen.update_profile(
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

CREATE FUNCTION keen.change_password(p_password_hash text, p_revoke_tokens boolean DEFAULT true)
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

CREATE FUNCTION keen.start_email_verification(p_token_hash text, p_expires_at timestamptz)
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

CREATE FUNCTION keen.confirm_email(p_token_hash text)
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

CREATE FUNCTION keen.change_email(p_email text, p_token_hash text, p_expires_at timestamptz)
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

CREATE FUNCTION keen.enroll_mfa(p_secret_ciphertext text, p_recovery_code_hashes text[])
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

CREATE FUNCTION keen.enable_mfa()
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

CREATE FUNCTION keen.disable_mfa()
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

CREATE FUNCTION keen.get_mfa_secret()
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

CREATE FUNCTION keen.use_recovery_code(p_code_hash text)
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

CREATE FUNCTION keen.close_account()
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
  -- The sessions list their active connections (keen.sync_session_connections): none now.
  UPDATE keen.agent_sessions AS s
     SET websocket_connections = '{}'
   WHERE s.user_id = v_user_id AND s.websocket_connections <> '{}';
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

-- Operators (not granted: run as keen_owner) ----------------------------------------------------

CREATE FUNCTION keen.suspend_user(p_user_id uuid, p_reason text)
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

CREATE FUNCTION keen.reactivate_user(p_user_id uuid)
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

CREATE FUNCTION keen.set_user_role(p_user_id uuid, p_role text)
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

-- Billing (not granted: the billing service runs as keen_owner) ------------------------------

CREATE FUNCTION keen.set_billing(
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

-- Trigger functions ---------------------------------------------------------------------------

CREATE FUNCTION keen.tg_user_audit_log__append_only()
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

-- ===== triggers ==============================================================
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.users
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();
CREATE TRIGGER _050_guard BEFORE UPDATE ON keen.auth_tokens
  FOR EACH ROW EXECUTE FUNCTION keen.tg_auth_tokens__guard();
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.auth_tokens
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();

CREATE TRIGGER _010_append_only BEFORE UPDATE OR DELETE ON keen.user_audit_log
  FOR EACH ROW EXECUTE FUNCTION keen.tg_user_audit_log__append_only();
CREATE TRIGGER _010_append_only_truncate BEFORE TRUNCATE ON keen.user_audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION keen.tg_user_audit_log__append_only();

-- Tenant reads by value (migration 0015): one shard on Citus, see list_sessions.
CREATE FUNCTION keen.current_user_profile()
RETURNS TABLE (
  id uuid, email text, username text, display_name text, role text, is_admin boolean,
  email_verified boolean, account_status text, mfa_enabled boolean, timezone text,
  preferences jsonb, subscription_tier text, subscription_status text, created_at timestamptz,
  updated_at timestamptz, last_login_at timestamptz, last_login_ip inet, avatar_url text,
  billing_customer_id text, suspended_reason text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  -- The tenant by value (users is distributed by id): on Citus one shard, not a scan of
  -- every shard filtered by the policy. The invoker's privileges hold: the columns the
  -- service may read, under RLS.
  RETURN QUERY
    SELECT u.id, u.email, u.username, u.display_name, u.role, u.is_admin, u.email_verified,
           u.account_status, u.mfa_enabled, u.timezone, u.preferences, u.subscription_tier,
           u.subscription_status, u.created_at, u.updated_at, u.last_login_at, u.last_login_ip,
           u.avatar_url, u.billing_customer_id, u.suspended_reason
      FROM keen.users AS u
     WHERE u.id = v_user_id;
END
$$;

CREATE FUNCTION keen.list_auth_tokens()
RETURNS SETOF keen.auth_tokens
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  RETURN QUERY
    SELECT t.* FROM keen.auth_tokens AS t
     WHERE t.user_id = v_user_id
     ORDER BY t.created_at DESC, t.id DESC;
END
$$;

CREATE FUNCTION keen.own_user_audit_log(p_before_id bigint, p_max_rows integer)
RETURNS SETOF keen.user_audit_log
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  -- The tenant's own page (list_user_audit_log's tenant branch), as keen_owner like the
  -- writers: on Citus one user per transaction on the shard's connection.
  RETURN QUERY
    SELECT l.* FROM keen.user_audit_log AS l
     WHERE l.user_id = v_user_id AND l.id < coalesce(p_before_id, 9223372036854775807)
     ORDER BY l.id DESC
     LIMIT least(greatest(coalesce(p_max_rows, 0), 0), 1000);
END
$$;

CREATE FUNCTION keen.list_user_audit_log(p_before_id bigint, p_max_rows integer)
RETURNS SETOF keen.user_audit_log
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF keen.current_user_id() IS NOT NULL THEN
    RETURN QUERY SELECT l.* FROM keen.own_user_audit_log(p_before_id, p_max_rows) AS l;
    RETURN;
  END IF;
  -- Without a tenant only an operator (keen_owner) sees rows; the service sees none (RLS):
  -- this branch stays the caller's own rights, which is why the function is no definer.
  RETURN QUERY
    -- all tenants: an operator's page of every user's trail (read-only, bounded to 1,000 rows)
    SELECT l.* FROM keen.user_audit_log AS l
     WHERE l.id < coalesce(p_before_id, 9223372036854775807)
     ORDER BY l.id DESC
     LIMIT least(greatest(coalesce(p_max_rows, 0), 0), 1000);
END
$$;

-- ===== row-level security ====================================================
ALTER TABLE keen.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.users FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.auth_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.auth_tokens FORCE ROW LEVEL SECURITY;
-- Tenants see and write only their own rows; the owner policy serves the
-- cross-tenant SECURITY DEFINER functions and the dashboard refresh.
CREATE POLICY select_own ON keen.users FOR SELECT TO keen_app
  USING (id = keen.current_user_id());
CREATE POLICY owner_all ON keen.users FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.auth_tokens FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.auth_tokens FOR ALL TO keen_owner USING (true) WITH CHECK (true);

ALTER TABLE keen.user_audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.user_audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY select_own ON keen.user_audit_log FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.user_audit_log FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- The lookup: no policy for keen_app (and no grant): only the owner's functions use it.
ALTER TABLE keen.tenant_lookup ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.tenant_lookup FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_all ON keen.tenant_lookup FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
-- Column grants: the service never reads secrets (password hash, MFA secret, recovery
-- codes, verification token), even of its own tenant; login_lookup() hands out the hash.
GRANT SELECT (id, user_id, email, username, display_name, role, is_admin, admin_privileges,
              email_verified, account_status, mfa_enabled, timezone, preferences,
              subscription_tier, subscription_status, created_at, updated_at, last_login_at,
              last_login_ip, avatar_url, billing_customer_id, email_verification_expires_at,
              suspended_reason)
  ON keen.users TO keen_app;
GRANT SELECT ON keen.user_audit_log TO keen_app;
-- Tokens: read through RLS; every write goes through the SECURITY DEFINER functions
-- (docs/security.md: keen_app holds no table privilege that writes or locks).
GRANT SELECT ON keen.auth_tokens TO keen_app;
GRANT EXECUTE ON FUNCTION
  keen.register_user(text, text, text, text, text),
  keen.login_lookup(text),
  keen.record_login(inet),
  keen.create_auth_token(text, text, text, text[], timestamptz, integer, inet, text),
  keen.authenticate_token(text, inet),
  keen.rotate_refresh_token(text, text, timestamptz, inet, text),
  keen.revoke_token(uuid)
  TO keen_app;

GRANT EXECUTE ON FUNCTION
  keen.set_client_ip(inet),
  keen.update_profile(text, text, text, jsonb),
  keen.change_password(text, boolean),
  keen.start_email_verification(text, timestamptz),
  keen.confirm_email(text),
  keen.change_email(text, text, timestamptz),
  keen.enroll_mfa(text, text[]),
  keen.enable_mfa(),
  keen.disable_mfa(),
  keen.get_mfa_secret(),
  keen.use_recovery_code(text),
  keen.close_account()
  TO keen_app;

GRANT EXECUTE ON FUNCTION
  keen.current_user_profile(), keen.list_auth_tokens(), keen.list_user_audit_log(bigint, integer)
  TO keen_app;

GRANT EXECUTE ON FUNCTION keen.own_user_audit_log(bigint, integer) TO keen_app;

-- ===== comments ==============================================================
COMMENT ON TABLE keen.users IS 'A keen user: the tenant. Created by keen.register_user().';
COMMENT ON COLUMN keen.users.user_id IS 'Always equal to id: the tenant key every tenant table shares.';
COMMENT ON COLUMN keen.users.email IS 'Login e-mail; unique case-insensitively across tenants (keen.tenant_lookup, kind email; KE009 detail users_lower_email_key).';
COMMENT ON COLUMN keen.users.username IS 'Login name; unique case-insensitively across tenants (keen.tenant_lookup, kind username; KE009 detail users_lower_username_key).';
COMMENT ON COLUMN keen.users.password_hash IS 'argon2id hash made in Python; never the password.';
COMMENT ON COLUMN keen.users.is_admin IS 'Derived from role, so the two can never disagree.';
COMMENT ON COLUMN keen.users.timezone IS 'IANA time zone; daily and monthly limits are counted in it.';
COMMENT ON TABLE keen.auth_tokens IS 'API keys, refresh tokens and session tokens; only a SHA-256 hash is stored.';
COMMENT ON COLUMN keen.auth_tokens.token_hash IS 'Lower-case hex SHA-256 of the token; unique across tenants (keen.tenant_lookup, kind auth_token).';
COMMENT ON COLUMN keen.auth_tokens.is_active IS 'Derived: true until the token is revoked.';
COMMENT ON COLUMN keen.auth_tokens.rate_window_start IS 'Start of the current one-hour rate-limit window.';
COMMENT ON COLUMN keen.auth_tokens.rate_window_count IS 'Uses counted in the current rate-limit window.';
COMMENT ON COLUMN keen.auth_tokens.family_id IS 'Refresh-token family: every rotation of one login.';
COMMENT ON COLUMN keen.auth_tokens.replaced_by IS 'The refresh token that replaced this one on rotation.';
COMMENT ON COLUMN keen.auth_tokens.revoked_reason IS
  'revoked (by its owner), rotated (replaced_by holds the successor) or reuse_detected (family revoked).';
COMMENT ON FUNCTION keen.tg_auth_tokens__guard() IS 'Trigger: a revoked token stays revoked.';
COMMENT ON FUNCTION keen.is_time_zone(text) IS 'Whether the text is an IANA time zone name the server knows.';
COMMENT ON FUNCTION keen.register_user(text, text, text, text, text) IS
  'Sign-up (SECURITY DEFINER, no tenant needed): creates the user and its credit account; returns the user id. KE009 duplicate e-mail/username, KE013 unknown time zone or malformed value.';
COMMENT ON FUNCTION keen.login_lookup(text) IS
  'Login step 1 (SECURITY DEFINER): by e-mail or username, the user id, password hash, MFA flag, account and verification status; no row when unknown. The password is verified in Python.';
COMMENT ON FUNCTION keen.record_login(inet) IS
  'Login step 2 (tenant): stamps last_login_at and last_login_ip of the caller; returns the time.';
COMMENT ON FUNCTION keen.create_auth_token(text, text, text, text[], timestamptz, integer, inet, text) IS
  'Stores a new token of the caller by its SHA-256 hash; a jwt_refresh token starts a new family. KE012 inactive user, KE013 bad type, hash, expiry or rate limit.';
COMMENT ON FUNCTION keen.authenticate_token(text, inet) IS
  'Token authentication (SECURITY DEFINER): user id, token id, type, scopes and whether the hourly rate limit is exceeded; no row for unknown, revoked or expired tokens or inactive users. Counts the use. A replayed rotated refresh token revokes its whole family.';
COMMENT ON FUNCTION keen.rotate_refresh_token(text, text, timestamptz, inet, text) IS
  'Refresh-token rotation (tenant, after authenticate_token): revokes the token and returns its successor in the same family. KE011 when the token was already rotated, KE006 when unknown, revoked or expired.';
COMMENT ON FUNCTION keen.revoke_token(uuid) IS
  'Revokes one of the caller''s tokens (a refresh token with its whole family); returns it. KE006 when not the caller''s.';

COMMENT ON COLUMN keen.users.display_name IS 'Name shown in the dashboard; free text, optional.';
COMMENT ON COLUMN keen.users.role IS 'user, admin or super_admin; is_admin derives from it. Grants no bypass of RLS or billing.';
COMMENT ON COLUMN keen.users.admin_privileges IS 'Admin capabilities as JSON (informational; enforced by the services).';
COMMENT ON COLUMN keen.users.email_verified IS 'True once the e-mail address is confirmed; then no verification token remains.';
COMMENT ON COLUMN keen.users.email_verification_token IS 'Pending e-mail confirmation token (hash); NULL once verified. Hidden from keen_app.';
COMMENT ON COLUMN keen.users.account_status IS 'active, suspended or deleted; only active users may log in.';
COMMENT ON COLUMN keen.users.mfa_enabled IS 'Whether login needs a second factor; requires mfa_secret.';
COMMENT ON COLUMN keen.users.mfa_secret IS 'TOTP secret of the second factor; hidden from keen_app.';
COMMENT ON COLUMN keen.users.recovery_codes IS 'Hashes of one-time MFA recovery codes; hidden from keen_app.';
COMMENT ON COLUMN keen.users.preferences IS 'The users settings as JSON.';
COMMENT ON COLUMN keen.users.subscription_tier IS 'individual, team or enterprise.';
COMMENT ON COLUMN keen.users.subscription_status IS 'active, past_due or cancelled (billing state of the subscription).';
COMMENT ON COLUMN keen.users.last_login_at IS 'Time of the last successful login (keen.record_login).';
COMMENT ON COLUMN keen.users.last_login_ip IS 'Client address of the last successful login.';
COMMENT ON COLUMN keen.auth_tokens.user_id IS 'The tenant owning the token.';
COMMENT ON COLUMN keen.auth_tokens.token_type IS 'jwt_refresh, api_key or session.';
COMMENT ON COLUMN keen.auth_tokens.token_name IS 'Label chosen by the user (e.g. for an API key).';
COMMENT ON COLUMN keen.auth_tokens.scopes IS 'Permission scopes granted to the token.';
COMMENT ON COLUMN keen.auth_tokens.expires_at IS 'When the token stops authenticating; NULL for never.';
COMMENT ON COLUMN keen.auth_tokens.last_used_at IS 'Time of the last successful authentication.';
COMMENT ON COLUMN keen.auth_tokens.usage_count IS 'Successful authentications, all time.';
COMMENT ON COLUMN keen.auth_tokens.created_ip IS 'Client address that created the token.';
COMMENT ON COLUMN keen.auth_tokens.last_used_ip IS 'Client address of the last authentication.';
COMMENT ON COLUMN keen.auth_tokens.user_agent IS 'User agent that created the token.';
COMMENT ON COLUMN keen.auth_tokens.revoked_at IS 'When the token was revoked (logout, rotation, reuse detection); final.';
COMMENT ON COLUMN keen.auth_tokens.rate_limit_per_hour IS 'Most authentications per fixed one-hour window.';

COMMENT ON COLUMN keen.auth_tokens.id IS 'Primary key.';
COMMENT ON COLUMN keen.auth_tokens.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN keen.auth_tokens.updated_at IS 'When the row was last updated (trigger _100_set_updated_at).';
COMMENT ON COLUMN keen.users.id IS 'Primary key: the user''s id, which every tenant row carries as user_id.';
COMMENT ON COLUMN keen.users.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN keen.users.updated_at IS 'When the row was last updated (trigger _100_set_updated_at).';

COMMENT ON TABLE keen.user_audit_log IS
  'Append-only trail of every change of a users row, written by the changing function (keen.append_user_audit) in its transaction; no UPDATE, DELETE or TRUNCATE but a migration (and the erasure of a closed account).';
COMMENT ON COLUMN keen.user_audit_log.id IS 'Primary key; increases with every entry.';
COMMENT ON COLUMN keen.user_audit_log.user_id IS 'The account that changed.';
COMMENT ON COLUMN keen.user_audit_log.actor IS
  'Who: user (the account''s own functions, register_user and record_login included), operator, billing, service (a service login writing outside its tenant) or system.';
COMMENT ON COLUMN keen.user_audit_log.action IS
  'What: the keen function that made the change (update_profile, suspend_user, …), record_login, or direct_update/direct_insert.';
COMMENT ON COLUMN keen.user_audit_log.changes IS
  'Changed columns: {"col": {"old": …, "new": …}}; secrets only {"changed": true}; personal values {"erased": true} once the account is closed.';
COMMENT ON COLUMN keen.user_audit_log.ip IS 'Client address the service set with keen.set_client_ip() in the transaction; NULL when none, or once the account is closed.';
COMMENT ON COLUMN keen.user_audit_log.actor_role IS 'The database login (session_user) that made the change.';
COMMENT ON COLUMN keen.user_audit_log.created_at IS 'When the change was made (the transaction''s time).';
COMMENT ON COLUMN keen.users.avatar_url IS 'https:// URL of the user''s picture (at most 2048 characters); optional.';
COMMENT ON COLUMN keen.users.billing_customer_id IS 'The billing provider''s customer id (e.g. Stripe cus_…); unique across tenants (keen.tenant_lookup); set by keen.set_billing().';
COMMENT ON COLUMN keen.users.email_verification_expires_at IS 'When the pending verification token stops working; set exactly with the token.';
COMMENT ON COLUMN keen.users.suspended_reason IS 'Why an operator suspended the user (keen.suspend_user); only while suspended.';
COMMENT ON FUNCTION keen.invalid_argument(text, text, text) IS 'Raises KE013 naming the argument and at most 24 characters of its value (none when NULL).';
COMMENT ON FUNCTION keen.check_secret_hash(text, text) IS 'KE013 unless the value is a lower-case hex SHA-256 (never quotes it).';
COMMENT ON FUNCTION keen.check_token_expiry(timestamp with time zone) IS 'KE013 unless the expiry is in the next 30 days.';
COMMENT ON FUNCTION keen.lock_account(uuid, boolean) IS
  'Locks the user''s row: KE006 when missing; for the user KE012 unless active, for an operator or billing KE007 when closed.';
COMMENT ON FUNCTION keen.redact_audit_changes(jsonb) IS 'The audit changes with every personal value replaced by {"erased": true}.';
COMMENT ON FUNCTION keen.set_client_ip(inet) IS
  'Records the client''s address for this transaction (app.client_ip); the audit trail stores it with each account change.';
COMMENT ON FUNCTION keen.update_profile(text, text, text, jsonb) IS
  'The caller''s display name, avatar URL, time zone and preferences; NULL leaves a field, '''' clears the name or avatar. KE013 invalid value, KE012 inactive user.';
COMMENT ON FUNCTION keen.change_password(text, boolean) IS
  'Stores the caller''s new password hash; with p_revoke_tokens (default) revokes every active token. Returns how many were revoked. KE013 bad hash, KE012 inactive user.';
COMMENT ON FUNCTION keen.start_email_verification(text, timestamp with time zone) IS
  'Stores the SHA-256 of a new verification token and its expiry (at most 30 days) for the caller. KE007 already verified, KE013 bad hash or expiry.';
COMMENT ON FUNCTION keen.confirm_email(text) IS
  'E-mail confirmation (SECURITY DEFINER, no tenant needed): marks the e-mail verified for a pending, unexpired token hash; returns the user id. KE006 unknown, used or expired.';
COMMENT ON FUNCTION keen.change_email(text, text, timestamp with time zone) IS
  'Changes the caller''s e-mail (unverified) and stores a verification token hash. KE009 taken, KE013 malformed e-mail, hash or expiry.';
COMMENT ON FUNCTION keen.enroll_mfa(text, text[]) IS
  'Stores the caller''s MFA secret as the service''s ciphertext and 1-20 recovery code hashes; MFA is on after enable_mfa(). KE007 MFA enabled, KE013 malformed input.';
COMMENT ON FUNCTION keen.enable_mfa() IS 'Turns the caller''s enrolled MFA on. KE007 not enrolled or already on.';
COMMENT ON FUNCTION keen.disable_mfa() IS 'Turns the caller''s MFA off and forgets the secret and recovery codes. KE007 not enrolled.';
COMMENT ON FUNCTION keen.get_mfa_secret() IS 'The caller''s MFA secret ciphertext (NULL when none), for the service to decrypt and check a code. KE012 inactive user.';
COMMENT ON FUNCTION keen.use_recovery_code(text) IS
  'Spends one of the caller''s recovery codes by its hash, exactly once; returns how many are left. KE006 unknown or used, KE007 MFA off.';
COMMENT ON FUNCTION keen.close_account() IS
  'Closes the caller''s account: erases e-mail, username, names, avatar, secrets, tokens, connections and personal audit values; closes the credit account; the ledger and usage history stay. KE007 running sessions or active holds.';
COMMENT ON FUNCTION keen.suspend_user(uuid, text) IS
  'Operator: suspends an active user with a reason (logins and tokens refused). KE006 unknown, KE007 not active, KE013 reason.';
COMMENT ON FUNCTION keen.reactivate_user(uuid) IS 'Operator: reactivates a suspended user. KE006 unknown, KE007 not suspended.';
COMMENT ON FUNCTION keen.set_user_role(uuid, text) IS 'Operator: sets a user''s role (user, admin, super_admin). KE006 unknown, KE007 closed, KE013 role.';
COMMENT ON FUNCTION keen.set_billing(uuid, text, text, text) IS
  'Billing: sets a user''s billing customer id, subscription tier and status; NULL leaves a field. KE006 unknown, KE007 closed, KE009 customer id taken, KE013 invalid value.';
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
COMMENT ON FUNCTION keen.tg_user_audit_log__append_only() IS
  'Refuses UPDATE, DELETE and TRUNCATE of the audit trail outside a migration, except its erasure on close and the cascade of a deleted user.';
COMMENT ON FUNCTION keen.current_user_profile() IS 'The caller''s own user row without secrets (the columns the service may read), by its key: one shard on Citus. KE010 without tenant.';
COMMENT ON FUNCTION keen.list_auth_tokens() IS 'The caller''s tokens, newest first, by the tenant key: one shard on Citus. KE010 without tenant.';
COMMENT ON FUNCTION keen.list_user_audit_log(bigint, integer) IS 'A page of the account trail before an id, newest first, at most 1,000 rows (a negative count reads none): the tenant''s own by the tenant key (one shard on Citus), or, without tenant, every user''s for an operator (keen_owner).';
COMMENT ON FUNCTION keen.own_user_audit_log(bigint, integer) IS 'The tenant''s own page of the account trail before an id, newest first, at most 1,000 rows (list_user_audit_log''s tenant branch, as keen_owner). KE010 without tenant.';

RESET ROLE;
