-- Users and tokens: sign-up, login, API/refresh/session tokens.
-- register_user, login_lookup, authenticate_token and confirm_email run without tenant context
-- (db.service()); the operator and billing queries (suspend_user, reactivate_user, set_user_role,
-- set_billing) on an operator login (keen_owner's rights); every other query inside db.tenant(user_id).
-- Account queries name their parameters for Python, without the p_ prefix.

-- name: AuthenticateToken :one
-- Authenticates a token by its SHA-256 hash and counts the use; no row when unknown, revoked or expired.
-- @lookup
-- @not-null: *
SELECT a.user_id, a.token_id, a.token_type, a.scopes, a.rate_limited
FROM keen.authenticate_token(
  p_token_hash => sqlc.arg(token_hash)::text,
  p_ip => sqlc.narg(ip)::inet
) AS a;

-- name: ChangeEmail :exec
-- Changes the caller's e-mail (unverified until confirmed) and stores the new verification token's hash.
SELECT keen.change_email(
  p_email => sqlc.arg(email)::text,
  p_token_hash => sqlc.arg(token_hash)::text,
  p_expires_at => sqlc.arg(expires_at)::timestamptz
);

-- name: ChangePassword :one
-- Stores the caller's new password hash; revokes every active token unless revoke_tokens is false.
SELECT keen.change_password(
  p_password_hash => sqlc.arg(password_hash)::text,
  p_revoke_tokens => sqlc.narg(revoke_tokens)::boolean
) AS revoked_tokens;

-- name: CloseAccount :exec
-- Closes the caller's account: erases personal data, keeps the ledger and usage history.
SELECT keen.close_account();

-- name: ConfirmEmail :one
-- Confirms an e-mail by the verification token's hash (no tenant needed); returns the user id.
SELECT keen.confirm_email(p_token_hash => sqlc.arg(token_hash)::text) AS user_id;

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
-- @not-null: *
-- @nullable: display_name, last_login_at, last_login_ip, avatar_url, billing_customer_id, suspended_reason
SELECT u.id, u.email, u.username, u.display_name, u.role, u.is_admin, u.email_verified,
       u.account_status, u.mfa_enabled, u.timezone, u.preferences, u.subscription_tier,
       u.subscription_status, u.created_at, u.updated_at, u.last_login_at, u.last_login_ip,
       u.avatar_url, u.billing_customer_id, u.suspended_reason
FROM keen.current_user_profile() AS u;

-- name: DisableMfa :exec
-- Turns the caller's MFA off and forgets the secret and the recovery codes.
SELECT keen.disable_mfa();

-- name: EnableMfa :exec
-- Turns the caller's enrolled MFA on (after the service checked a code of the new secret).
SELECT keen.enable_mfa();

-- name: EnrollMfa :exec
-- Stores the caller's MFA secret as the service's ciphertext and the recovery codes' hashes.
SELECT keen.enroll_mfa(
  p_secret_ciphertext => sqlc.arg(secret_ciphertext)::text,
  p_recovery_code_hashes => sqlc.arg(recovery_code_hashes)::text[]
);

-- name: GetMfaSecret :one
-- The caller's MFA secret ciphertext (None when not enrolled), for the service to decrypt.
-- @nullable: secret_ciphertext
SELECT keen.get_mfa_secret() AS secret_ciphertext;

-- name: ListAuthTokens :many
-- The caller's tokens, newest first (hashes left out).
SELECT t.id, t.token_type, t.token_name, t.scopes, t.expires_at, t.last_used_at, t.usage_count,
       t.created_ip, t.last_used_ip, t.user_agent, t.revoked_at, t.revoked_reason, t.is_active,
       t.rate_limit_per_hour, t.family_id, t.replaced_by, t.created_at
FROM keen.list_auth_tokens() AS t
ORDER BY t.created_at DESC, t.id DESC;

-- name: ListUserAuditLog :many
-- The account changes the caller may read (a tenant its own), newest first, before an id;
-- at most 1,000 a page (a negative max_rows reads none).
SELECT l.id, l.user_id, l.actor, l.action, l.changes, l.ip, l.actor_role, l.created_at
FROM keen.list_user_audit_log(
  p_before_id => sqlc.narg(before_id)::bigint,
  p_max_rows => sqlc.arg(max_rows)::integer
) AS l
ORDER BY l.id DESC;

-- name: LoginLookup :one
-- Finds a user by e-mail or username for a login: id, password hash, MFA flag, statuses.
-- @lookup
-- @not-null: *
SELECT l.user_id, l.password_hash, l.mfa_enabled, l.account_status, l.email_verified
FROM keen.login_lookup(p_login => sqlc.arg(login)::text) AS l;

-- name: ReactivateUser :exec
-- Operator: reactivates a suspended user.
SELECT keen.reactivate_user(p_user_id => sqlc.arg(user_id)::uuid);

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

-- name: SetBilling :exec
-- Billing: sets a user's billing customer id, subscription tier and status (None leaves a field).
SELECT keen.set_billing(
  p_user_id => sqlc.arg(user_id)::uuid,
  p_billing_customer_id => sqlc.narg(billing_customer_id)::text,
  p_subscription_tier => sqlc.narg(subscription_tier)::text,
  p_subscription_status => sqlc.narg(subscription_status)::text
);

-- name: SetClientIp :exec
-- Records the client's address for this transaction; the audit trail stores it with each change.
SELECT keen.set_client_ip(p_ip => sqlc.narg(ip)::inet);

-- name: SetUserRole :exec
-- Operator: sets a user's role (user, admin, super_admin).
SELECT keen.set_user_role(p_user_id => sqlc.arg(user_id)::uuid, p_role => sqlc.arg(role)::text);

-- name: StartEmailVerification :exec
-- Stores the hash of a new e-mail verification token of the caller and its expiry.
SELECT keen.start_email_verification(
  p_token_hash => sqlc.arg(token_hash)::text,
  p_expires_at => sqlc.arg(expires_at)::timestamptz
);

-- name: SuspendUser :exec
-- Operator: suspends an active user, with the reason.
SELECT keen.suspend_user(p_user_id => sqlc.arg(user_id)::uuid, p_reason => sqlc.arg(reason)::text);

-- name: UpdateProfile :exec
-- Changes the caller's display name, avatar URL, time zone and preferences (None leaves a field).
SELECT keen.update_profile(
  p_display_name => sqlc.narg(display_name)::text,
  p_avatar_url => sqlc.narg(avatar_url)::text,
  p_timezone => sqlc.narg(timezone)::text,
  p_preferences => sqlc.narg(preferences)::jsonb
);

-- name: UseRecoveryCode :one
-- Spends one of the caller's recovery codes by its hash, exactly once; returns how many are left.
SELECT keen.use_recovery_code(p_code_hash => sqlc.arg(code_hash)::text) AS remaining_codes;
