-- User accounts (issue 20): the original users columns avatar_url and billing_customer_id;
-- the account functions (profile, password, e-mail verification and change, MFA, recovery
-- codes, closing with erasure; operators' suspend/reactivate/role; billing); secrets at
-- rest only as hashes or the service's ciphertext; and keen.user_audit_log, an append-only
-- trail of every change of a users row written in the changing transaction by a trigger.
--
-- The new CHECKs are validated at once: until now no function wrote a verification token,
-- an MFA secret or recovery codes, so a row that breaks them was written by hand; the
-- migration then stops on that row's constraint rather than keep a readable secret.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

-- ===== tables ================================================================
-- New columns are NULL for every existing row, so each CHECK scans nothing it could refuse
-- (the ADD takes the table's lock once for all of them).
-- squawk-ignore-file constraint-missing-not-valid
-- squawk-ignore-file adding-field-with-default
ALTER TABLE keen.users
  ADD COLUMN avatar_url text,
  ADD COLUMN billing_customer_id text,
  ADD COLUMN email_verification_expires_at timestamptz,
  ADD COLUMN suspended_reason text,
  ADD CONSTRAINT users_avatar_url_check CHECK (avatar_url ~ '^https://[^\s]+$' AND length(avatar_url) <= 2048),
  ADD CONSTRAINT users_billing_customer_id_check CHECK (billing_customer_id ~ '^[A-Za-z0-9_-]{1,255}$'),
  ADD CONSTRAINT users_display_name_check CHECK (length(display_name) <= 255),
  ADD CONSTRAINT users_preferences_check
    CHECK (jsonb_typeof(preferences) = 'object' AND octet_length(preferences::text) <= 16384),
  ADD CONSTRAINT users_suspended_reason_check
    CHECK (suspended_reason IS NULL OR (account_status = 'suspended' AND length(suspended_reason) BETWEEN 1 AND 500)),
  -- Secrets at rest: a verification token and recovery codes only as SHA-256 hex digests, the
  -- MFA secret only as the service's ciphertext ("<key id>:<base64>", too long for a bare
  -- TOTP secret); a pending token always has its expiry.
  ADD CONSTRAINT users_email_verification_token_check
    CHECK (email_verification_token ~ '^[0-9a-f]{64}$'),
  ADD CONSTRAINT users_email_verification_expires_at_check
    CHECK ((email_verification_token IS NULL) = (email_verification_expires_at IS NULL)),
  ADD CONSTRAINT users_mfa_secret_check
    CHECK (mfa_secret ~ '^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9+/_=-]{40,}$' AND length(mfa_secret) <= 4160),
  ADD CONSTRAINT users_recovery_codes_check
    CHECK (cardinality(recovery_codes) <= 20 AND array_position(recovery_codes, NULL) IS NULL
           AND array_to_string(recovery_codes, ' ') ~ '^([0-9a-f]{64}( |$))*$'),
  -- The placeholders a closed account gets are never anyone else's e-mail or username.
  ADD CONSTRAINT users_erased_identity_check
    CHECK (account_status = 'deleted'
           OR (email !~* '@erased\.invalid$' AND username !~ '^erased-[0-9a-f]{32}$'));

CREATE TABLE keen.user_audit_log (
  id          bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
  user_id     uuid        NOT NULL,
  actor       text        NOT NULL,
  action      text        NOT NULL,
  changes     jsonb       NOT NULL,
  ip          inet,
  actor_role  text        NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT user_audit_log_pkey PRIMARY KEY (id),
  CONSTRAINT user_audit_log_user_id_id_key UNIQUE (user_id, id),
  -- A user deleted outright (no ledger yet) takes its trail along; a closed one keeps it.
  CONSTRAINT user_audit_log_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  CONSTRAINT user_audit_log_actor_check CHECK (actor IN ('user', 'operator', 'billing', 'service', 'system')),
  CONSTRAINT user_audit_log_action_check CHECK (action ~ '^[a-z_]{1,64}$'),
  CONSTRAINT user_audit_log_changes_check CHECK (jsonb_typeof(changes) = 'object')
);

-- ===== indexes ===============================================================
-- confirm_email finds the pending verification by its hash, before any tenant is known.
CREATE INDEX users_email_verification_token_idx ON keen.users (email_verification_token)
  WHERE email_verification_token IS NOT NULL;
-- A billing customer is one user's; billing finds the user by it.
CREATE UNIQUE INDEX users_billing_customer_id_key ON keen.users (billing_customer_id)
  WHERE billing_customer_id IS NOT NULL;

-- ===== functions =============================================================
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

CREATE FUNCTION keen.change_password(p_password_hash text, p_revoke_tokens boolean DEFAULT true)
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

CREATE FUNCTION keen.start_email_verification(p_token_hash text, p_expires_at timestamptz)
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

CREATE FUNCTION keen.confirm_email(p_token_hash text)
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

CREATE FUNCTION keen.change_email(p_email text, p_token_hash text, p_expires_at timestamptz)
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

CREATE FUNCTION keen.enroll_mfa(p_secret_ciphertext text, p_recovery_code_hashes text[])
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

CREATE FUNCTION keen.enable_mfa()
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

CREATE FUNCTION keen.disable_mfa()
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
  SELECT u.* INTO v_user FROM keen.users AS u WHERE u.user_id = v_user_id;
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

CREATE FUNCTION keen.close_account()
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  PERFORM keen.lock_account(v_user_id);
  -- The locks a new session and a new hold take (event stream, then account, the order the
  -- session functions use): none can start between the check below and the commit.
  PERFORM keen.lock_event_stream(v_user_id);
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

-- Operators (not granted: run as keen_owner) ----------------------------------------------------

CREATE FUNCTION keen.suspend_user(p_user_id uuid, p_reason text)
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

CREATE FUNCTION keen.reactivate_user(p_user_id uuid)
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

CREATE FUNCTION keen.set_user_role(p_user_id uuid, p_role text)
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

-- Trigger functions ---------------------------------------------------------------------------

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

CREATE FUNCTION keen.tg_user_audit_log__append_only()
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

-- ===== triggers ==============================================================
-- After every other trigger of the row: the audit sees the values that are stored.
CREATE TRIGGER _900_audit AFTER INSERT OR UPDATE ON keen.users
  FOR EACH ROW EXECUTE FUNCTION keen.tg_users__audit();
CREATE TRIGGER _010_append_only BEFORE UPDATE OR DELETE ON keen.user_audit_log
  FOR EACH ROW EXECUTE FUNCTION keen.tg_user_audit_log__append_only();
CREATE TRIGGER _010_append_only_truncate BEFORE TRUNCATE ON keen.user_audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION keen.tg_user_audit_log__append_only();

-- ===== row-level security ====================================================
ALTER TABLE keen.user_audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.user_audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY select_own ON keen.user_audit_log FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.user_audit_log FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
GRANT SELECT (avatar_url, billing_customer_id, email_verification_expires_at, suspended_reason)
  ON keen.users TO keen_app;
GRANT SELECT ON keen.user_audit_log TO keen_app;
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

-- ===== comments ==============================================================
COMMENT ON TABLE keen.user_audit_log IS
  'Append-only trail of every change of a users row, written by the trigger _900_audit in the changing transaction; no UPDATE, DELETE or TRUNCATE but a migration (and the erasure of a closed account).';
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
COMMENT ON COLUMN keen.users.billing_customer_id IS 'The billing provider''s customer id (e.g. Stripe cus_…); unique; set by keen.set_billing().';
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
COMMENT ON FUNCTION keen.tg_users__audit() IS
  'Trigger (SECURITY DEFINER): appends one user_audit_log row per changed users row, naming the actor and the function that made the change.';
COMMENT ON FUNCTION keen.tg_user_audit_log__append_only() IS
  'Refuses UPDATE, DELETE and TRUNCATE of the audit trail outside a migration, except its erasure on close and the cascade of a deleted user.';

RESET ROLE;
