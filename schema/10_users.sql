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
  CONSTRAINT users_pkey PRIMARY KEY (id),
  CONSTRAINT users_user_id_key UNIQUE (user_id),
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
  CONSTRAINT users_email_verification_check CHECK (NOT (email_verified AND email_verification_token IS NOT NULL))
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
  CONSTRAINT auth_tokens_pkey PRIMARY KEY (id),
  CONSTRAINT auth_tokens_user_id_id_key UNIQUE (user_id, id),
  CONSTRAINT auth_tokens_token_hash_key UNIQUE (token_hash),
  CONSTRAINT auth_tokens_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  CONSTRAINT auth_tokens_replaced_by_fkey FOREIGN KEY (user_id, replaced_by)
    REFERENCES keen.auth_tokens (user_id, id) ON DELETE SET NULL (replaced_by),
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

-- ===== indexes ===============================================================
-- Email and username are unique whatever their case; logins look them up by lower().
CREATE UNIQUE INDEX users_lower_email_key ON keen.users (lower(email));
CREATE UNIQUE INDEX users_lower_username_key ON keen.users (lower(username));
CREATE INDEX auth_tokens_user_id_created_at_idx ON keen.auth_tokens (user_id, created_at DESC);
CREATE INDEX auth_tokens_family_id_idx ON keen.auth_tokens (family_id) WHERE family_id IS NOT NULL;

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

CREATE FUNCTION keen.login_lookup(p_login text)
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

CREATE FUNCTION keen.record_login(p_ip inet DEFAULT NULL)
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

-- ===== triggers ==============================================================
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.users
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();
CREATE TRIGGER _050_guard BEFORE UPDATE ON keen.auth_tokens
  FOR EACH ROW EXECUTE FUNCTION keen.tg_auth_tokens__guard();
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.auth_tokens
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();

-- ===== row-level security ====================================================
ALTER TABLE keen.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.users FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.auth_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.auth_tokens FORCE ROW LEVEL SECURITY;
-- Tenants see and write only their own rows; the owner policy serves the
-- cross-tenant SECURITY DEFINER functions and the dashboard refresh.
CREATE POLICY select_own ON keen.users FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.users FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.auth_tokens FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.auth_tokens FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
-- Column grants: the service never reads secrets (password hash, MFA secret, recovery
-- codes, verification token), even of its own tenant; login_lookup() hands out the hash.
GRANT SELECT (id, user_id, email, username, display_name, role, is_admin, admin_privileges,
              email_verified, account_status, mfa_enabled, timezone, preferences,
              subscription_tier, subscription_status, created_at, updated_at, last_login_at,
              last_login_ip)
  ON keen.users TO keen_app;
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

-- ===== comments ==============================================================
COMMENT ON TABLE keen.users IS 'A keen user: the tenant. Created by keen.register_user().';
COMMENT ON COLUMN keen.users.user_id IS 'Always equal to id: the tenant key every tenant table shares.';
COMMENT ON COLUMN keen.users.email IS 'Login e-mail; unique case-insensitively (users_lower_email_key).';
COMMENT ON COLUMN keen.users.username IS 'Login name; unique case-insensitively (users_lower_username_key).';
COMMENT ON COLUMN keen.users.password_hash IS 'argon2id hash made in Python; never the password.';
COMMENT ON COLUMN keen.users.is_admin IS 'Derived from role, so the two can never disagree.';
COMMENT ON COLUMN keen.users.timezone IS 'IANA time zone; daily and monthly limits are counted in it.';
COMMENT ON TABLE keen.auth_tokens IS 'API keys, refresh tokens and session tokens; only a SHA-256 hash is stored.';
COMMENT ON COLUMN keen.auth_tokens.token_hash IS 'Lower-case hex SHA-256 of the token; globally unique.';
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

RESET ROLE;
