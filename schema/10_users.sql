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
  CONSTRAINT auth_tokens_replaced_by_check CHECK (replaced_by IS NULL OR revoked_at IS NOT NULL)
);

-- ===== indexes ===============================================================
-- Email and username are unique whatever their case; logins look them up by lower().
CREATE UNIQUE INDEX users_lower_email_key ON keen.users (lower(email));
CREATE UNIQUE INDEX users_lower_username_key ON keen.users (lower(username));
CREATE INDEX auth_tokens_user_id_created_at_idx ON keen.auth_tokens (user_id, created_at DESC);
CREATE INDEX auth_tokens_family_id_idx ON keen.auth_tokens (family_id) WHERE family_id IS NOT NULL;

-- ===== triggers ==============================================================
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.users
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();
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
CREATE POLICY insert_own ON keen.auth_tokens FOR INSERT TO keen_app
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY update_own ON keen.auth_tokens FOR UPDATE TO keen_app
  USING (user_id = (SELECT keen.current_user_id()))
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.auth_tokens FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
GRANT SELECT ON keen.users TO keen_app;
GRANT SELECT, INSERT, UPDATE ON keen.auth_tokens TO keen_app;

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

RESET ROLE;
