-- Users and tokens: sign-up, login, API/refresh/session tokens.
-- register_user, login_lookup and authenticate_token run without tenant context (db.service());
-- every other query runs inside db.tenant(user_id).

-- name: AuthenticateToken :one
-- Authenticates a token by its SHA-256 hash and counts the use; no row when unknown, revoked or expired.
-- @lookup
-- @not-null: *
SELECT a.user_id, a.token_id, a.token_type, a.scopes, a.rate_limited
FROM keen.authenticate_token(
  p_token_hash => sqlc.arg(token_hash)::text,
  p_ip => sqlc.narg(ip)::inet
) AS a;

-- name: CreateAuthToken :one
-- Stores a new token of the caller by its hash; a jwt_refresh token starts a new family.
SELECT * FROM keen.create_auth_token(
  p_token_type => sqlc.arg(token_type)::text,
  p_token_hash => sqlc.arg(token_hash)::text,
  p_token_name => sqlc.narg(token_name)::text,
  p_scopes => sqlc.arg(scopes)::text[],
  p_expires_at => sqlc.narg(expires_at)::timestamptz,
  p_rate_limit_per_hour => sqlc.arg(rate_limit_per_hour)::integer,
  p_created_ip => sqlc.narg(created_ip)::inet,
  p_user_agent => sqlc.narg(user_agent)::text
);

-- name: CurrentUser :one
-- The caller's own user row, without secrets (the service cannot read them).
SELECT u.id, u.email, u.username, u.display_name, u.role, u.is_admin, u.email_verified,
       u.account_status, u.mfa_enabled, u.timezone, u.preferences, u.subscription_tier,
       u.subscription_status, u.created_at, u.updated_at, u.last_login_at, u.last_login_ip
FROM keen.users AS u;

-- name: ListAuthTokens :many
-- The caller's tokens, newest first (hashes left out).
SELECT t.id, t.token_type, t.token_name, t.scopes, t.expires_at, t.last_used_at, t.usage_count,
       t.created_ip, t.last_used_ip, t.user_agent, t.revoked_at, t.revoked_reason, t.is_active,
       t.rate_limit_per_hour, t.family_id, t.replaced_by, t.created_at
FROM keen.auth_tokens AS t
ORDER BY t.created_at DESC, t.id DESC;

-- name: LoginLookup :one
-- Finds a user by e-mail or username for a login: id, password hash, MFA flag, statuses.
-- @lookup
-- @not-null: *
SELECT l.user_id, l.password_hash, l.mfa_enabled, l.account_status, l.email_verified
FROM keen.login_lookup(p_login => sqlc.arg(login)::text) AS l;

-- name: RecordLogin :one
-- Stamps the caller's last login time and IP; returns the time.
SELECT keen.record_login(p_ip => sqlc.narg(ip)::inet) AS last_login_at;

-- name: RegisterUser :one
-- Signs a user up and opens the credit account; returns the new user id.
SELECT keen.register_user(
  p_email => sqlc.arg(email)::text,
  p_username => sqlc.arg(username)::text,
  p_password_hash => sqlc.arg(password_hash)::text,
  p_display_name => sqlc.narg(display_name)::text,
  p_timezone => sqlc.arg(timezone)::text
) AS user_id;

-- name: RevokeToken :one
-- Revokes one of the caller's tokens (a refresh token with its whole family); returns it.
SELECT * FROM keen.revoke_token(p_token_id => sqlc.arg(token_id)::uuid);

-- name: RotateRefreshToken :one
-- Replaces the caller's refresh token by its successor in the same family; KE011 on reuse.
SELECT * FROM keen.rotate_refresh_token(
  p_token_hash => sqlc.arg(token_hash)::text,
  p_new_token_hash => sqlc.arg(new_token_hash)::text,
  p_expires_at => sqlc.arg(expires_at)::timestamptz,
  p_ip => sqlc.narg(ip)::inet,
  p_user_agent => sqlc.narg(user_agent)::text
);
