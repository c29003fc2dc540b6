-- The attacker model (issue 13): a tenant's own transaction running any SQL as keen_app (one
-- injection in one request) still cannot read, change, reference, charge, delay or observe
-- another tenant, nor gain another role's rights (docs/security.md):
--   * every function pins search_path = pg_catalog, pg_temp (pg_temp last: a temporary type,
--     table or function never shadows ours), and no service role creates temporary objects;
--   * keen_app holds SELECT only (through RLS): every write is a SECURITY DEFINER function
--     that takes the tenant from keen.require_user_id() and names user_id by value, so the
--     service can neither lock a shared table nor write money, session state, events or
--     stats around the API, nor choose a time, an id or another tenant's session;
--   * NOTIFY payloads are empty wake-ups; the event-stream lock is the tenant's own row;
--   * free text is bounded, bad input raises KE004/KE010/KE013 at the call, a malformed
--     context is no tenant; payment intents are unique per tenant; tokens are capped.
-- squawk-ignore-file ban-drop-constraint
-- squawk-ignore-file constraint-missing-not-valid
-- squawk-ignore-file disallowed-unique-constraint
-- squawk-ignore-file require-concurrent-index-creation

-- Temporary objects: the database's owner (or a superuser) revokes TEMP from PUBLIC, so no
-- service login (each is a PUBLIC member) can create one; keen_owner keeps it (REFRESH
-- MATERIALIZED VIEW CONCURRENTLY builds its diff in a temp table). Runs as the migrating
-- superuser.
DO $temp$
BEGIN
  EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', pg_catalog.current_database());
  EXECUTE pg_catalog.format('GRANT TEMPORARY ON DATABASE %I TO keen_owner', pg_catalog.current_database());
END
$temp$;

SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

-- ===== search_path ===========================================================
-- Every function of keen, pg_temp last (the functions replaced below state it themselves).
DO $pin$
DECLARE
  v_function regprocedure;
BEGIN
  FOR v_function IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
     WHERE p.pronamespace = 'keen'::regnamespace ORDER BY 1
  LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', v_function);
  END LOOP;
END
$pin$;

-- ===== tables ================================================================
-- Payment intents are unique per tenant (leading with user_id), and bounded.
ALTER TABLE keen.credit_transactions
  DROP CONSTRAINT credit_transactions_stripe_payment_intent_id_key,
  ADD CONSTRAINT credit_transactions_user_id_stripe_payment_intent_id_key UNIQUE (user_id, stripe_payment_intent_id),
  ADD CONSTRAINT credit_transactions_stripe_payment_intent_id_check
    CHECK (stripe_payment_intent_id IS NULL OR length(stripe_payment_intent_id) BETWEEN 1 AND 255);

-- ===== functions =============================================================
CREATE FUNCTION keen.text_prefix(p_value text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Error messages quote at most 24 characters of a caller's value (no megabytes in the log).
  IF p_value IS NULL THEN
    RETURN 'NULL';
  ELSIF pg_catalog.length(p_value) <= 24 THEN
    RETURN pg_catalog.quote_literal(p_value);
  END IF;
  RETURN pg_catalog.quote_literal(pg_catalog.left(p_value, 24)) || '...';
END
$$;

CREATE FUNCTION keen.check_text(p_value text, p_what text, p_max integer, p_required boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Every free-text argument is bounded (1 to p_max characters; NULL only when optional).
  IF p_value IS NULL THEN
    IF p_required THEN
      RAISE EXCEPTION 'invalid argument: % is required', p_what USING ERRCODE = 'KE013';
    END IF;
  ELSIF pg_catalog.length(p_value) NOT BETWEEN 1 AND p_max THEN
    RAISE EXCEPTION 'invalid argument: % % has % characters (1 to % allowed)', p_what,
        keen.text_prefix(p_value), pg_catalog.length(p_value), p_max
      USING ERRCODE = 'KE013';
  END IF;
END
$$;

CREATE FUNCTION keen.check_text_array(p_values text[], p_what text, p_max_items integer, p_max integer)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_value text;
BEGIN
  -- At most p_max_items elements, each 1 to p_max characters and not NULL.
  IF p_values IS NULL THEN
    RETURN;
  END IF;
  IF pg_catalog.cardinality(p_values) > p_max_items THEN
    RAISE EXCEPTION 'invalid argument: % has % elements (at most % allowed)', p_what,
        pg_catalog.cardinality(p_values), p_max_items
      USING ERRCODE = 'KE013';
  END IF;
  FOREACH v_value IN ARRAY p_values LOOP
    PERFORM keen.check_text(v_value, p_what || ' element', p_max, true);
  END LOOP;
END
$$;

CREATE FUNCTION keen.check_jsonb(p_value jsonb, p_what text, p_max_bytes integer)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_value IS NOT NULL AND pg_catalog.pg_column_size(p_value) > p_max_bytes THEN
    RAISE EXCEPTION 'invalid argument: % takes % bytes (at most % allowed)', p_what,
        pg_catalog.pg_column_size(p_value), p_max_bytes
      USING ERRCODE = 'KE013';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION keen.current_user_id()
RETURNS uuid
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_setting text;
BEGIN
  -- After a transaction-local setting ends, the setting reads '' rather than NULL:
  -- both mean "no tenant".
  -- PL/pgSQL, not SQL: a SQL function with SET search_path is never inlined and is parsed
  -- and planned again on every call, i.e. on every statement under RLS (~10 µs each);
  -- PL/pgSQL keeps its plan for the session (bench/isolation, bench/credits).
  -- Fail closed: anything but a canonical uuid (malformed, padded, braced) is no tenant,
  -- never a raw 22P02 (a regular expression is cheaper than an exception block).
  v_setting := pg_catalog.current_setting('app.current_user_id', true);
  IF v_setting ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
    RETURN v_setting::uuid;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION keen.is_time_zone(p_name text)
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

CREATE OR REPLACE FUNCTION keen.revoke_token(p_token_id uuid)
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

CREATE OR REPLACE FUNCTION keen.lock_event_stream(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Only the tenant's own stream, and only in its own context (KE010 without one): no
  -- transaction can stall another tenant's events. Not executable by keen_app: the
  -- SECURITY DEFINER session functions call it.
  IF p_user_id IS DISTINCT FROM keen.require_user_id() THEN
    RAISE EXCEPTION 'event stream not found: %', p_user_id
      USING ERRCODE = 'KE006', HINT = 'A transaction may lock only its own tenant''s event stream.';
  END IF;
  -- Held until commit: one transaction at a time appends to a user's event log, so the
  -- user's event ids are assigned in commit order and "after id N" never skips a late
  -- commit. The lock is the user's own row (NO KEY UPDATE: foreign-key checks pass), which
  -- keen_app cannot lock (it holds no UPDATE privilege), unlike an advisory key.
  PERFORM FROM keen.users AS u WHERE u.user_id = p_user_id AND u.id = p_user_id FOR NO KEY UPDATE;
END
$$;

CREATE OR REPLACE FUNCTION keen.get_session(p_session_id text)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_session keen.agent_sessions;
BEGIN
  PERFORM keen.check_text(p_session_id, 'session id', 128);
  SELECT s.* INTO v_session
    FROM keen.agent_sessions AS s
   WHERE s.user_id = v_user_id AND s.session_id = p_session_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: session %', coalesce(pg_catalog.quote_literal(p_session_id), 'NULL')
      USING ERRCODE = 'KE006';
  END IF;
  RETURN v_session;
END
$$;

CREATE OR REPLACE FUNCTION keen.lock_session(p_session_id text)
RETURNS keen.agent_sessions
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  -- NO KEY UPDATE is what the UPDATE that follows takes anyway; it lets foreign-key
  -- checks (events, ledger rows, children) through.
  SELECT s.* FROM keen.agent_sessions AS s
   WHERE s.user_id = (SELECT keen.require_user_id()) AND s.id = (SELECT keen.session_uuid(p_session_id))
     FOR NO KEY UPDATE
$$;

CREATE OR REPLACE FUNCTION keen.start_session(
  p_session_id        text,
  p_vision            text,
  p_working_directory text,
  p_git_branch        text,
  p_parent_session_id text DEFAULT NULL
)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_user_status text;
  v_account_status text;
  v_parent keen.agent_sessions;
  v_max_depth integer;
  v_max_children integer;
  v_children bigint;
  v_session keen.agent_sessions;
BEGIN
  IF p_session_id IS NULL OR p_vision IS NULL OR p_working_directory IS NULL OR p_git_branch IS NULL THEN
    RAISE EXCEPTION 'invalid argument: session id, vision, working directory and git branch are required'
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_text(p_session_id, 'session id', 128);
  PERFORM keen.check_text(p_vision, 'vision', 65536);
  PERFORM keen.check_text(p_working_directory, 'working directory', 4096);
  PERFORM keen.check_text(p_git_branch, 'git branch', 255);
  -- A suspended or closed user or credit account starts nothing (and a context naming no
  -- user is no tenant: KE010, not a raw foreign-key error).
  SELECT u.account_status, a.account_status INTO v_user_status, v_account_status
    FROM keen.users AS u LEFT JOIN keen.credit_accounts AS a ON a.user_id = v_user_id
   WHERE u.user_id = v_user_id AND u.id = v_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no tenant context: user % does not exist', v_user_id USING ERRCODE = 'KE010';
  ELSIF v_user_status <> 'active' OR v_account_status IS DISTINCT FROM 'active' THEN
    RAISE EXCEPTION 'account not active: user %, credit account %', v_user_status, coalesce(v_account_status, 'missing')
      USING ERRCODE = 'KE012';
  END IF;
  PERFORM keen.lock_event_stream(v_user_id);

  IF p_parent_session_id IS NOT NULL THEN
    -- The parent's lock orders this start against its completion, cancellation and
    -- other children's starts, so "still running" and the children count hold at commit.
    v_parent := keen.lock_session(p_parent_session_id);
    IF v_parent.execution_status <> 'running' THEN
      RAISE EXCEPTION 'invalid state transition: parent session % is %, not running',
          pg_catalog.quote_literal(p_parent_session_id), v_parent.execution_status
        USING ERRCODE = 'KE007', HINT = 'Only a running session can start child sessions.';
    END IF;
    SELECT l.max_depth, l.max_children INTO v_max_depth, v_max_children FROM keen.session_limits AS l;
    IF v_parent.session_depth + 1 > v_max_depth THEN
      RAISE EXCEPTION 'hierarchy limit exceeded: a child of % would be at depth %, the maximum is %',
          pg_catalog.quote_literal(p_parent_session_id), v_parent.session_depth + 1, v_max_depth
        USING ERRCODE = 'KE008', DETAIL = 'max_depth',
              HINT = 'keen.session_limits.max_depth sets the limit (NULL: none).';
    END IF;
    IF v_max_children IS NOT NULL THEN
      SELECT pg_catalog.count(*) INTO v_children
        FROM keen.agent_sessions AS c
       WHERE c.user_id = v_user_id AND c.parent_session_id = v_parent.id;
      IF v_children >= v_max_children THEN
        RAISE EXCEPTION 'hierarchy limit exceeded: session % already has % children, the maximum is %',
            pg_catalog.quote_literal(p_parent_session_id), v_children, v_max_children
          USING ERRCODE = 'KE008', DETAIL = 'max_children',
                HINT = 'keen.session_limits.max_children sets the limit (NULL: none).';
      END IF;
    END IF;
  END IF;

  -- The row is created with its first event's number; the depth comes from the parent
  -- (trigger _010_set_depth).
  INSERT INTO keen.agent_sessions AS s
         (user_id, session_id, parent_session_id, git_branch, vision, working_directory, last_event_seq)
  VALUES (v_user_id, p_session_id, v_parent.id, p_git_branch, p_vision, p_working_directory, 1)
  ON CONFLICT ON CONSTRAINT agent_sessions_user_id_session_id_key DO NOTHING
  RETURNING s.* INTO v_session;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'already exists: session %', pg_catalog.quote_literal(p_session_id)
      USING ERRCODE = 'KE009', DETAIL = 'agent_sessions_user_id_session_id_key';
  END IF;

  PERFORM keen.append_session_event(v_session, 'session.started', pg_catalog.jsonb_build_object(
    'parent_session_id', v_session.parent_session_id,
    'session_depth', v_session.session_depth,
    'current_phase', v_session.current_phase));
  RETURN v_session;
END
$$;

CREATE OR REPLACE FUNCTION keen.update_session_progress(
  p_session_id text,
  p_phase      text    DEFAULT NULL,
  p_iterations integer DEFAULT 0,
  p_tool_calls integer DEFAULT 0,
  p_tokens     bigint  DEFAULT 0,
  p_cost       numeric DEFAULT 0
)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_before keen.agent_sessions;
  v_session keen.agent_sessions;
BEGIN
  IF p_phase IS NOT NULL AND keen.session_phase_rank(p_phase) IS NULL THEN
    RAISE EXCEPTION 'invalid argument: unknown phase %', keen.text_prefix(p_phase)
      USING ERRCODE = 'KE013', HINT = 'Phases are EXPLORE, PLAN, SUMMON, COMPLETE, in that order.';
  END IF;
  IF coalesce(p_iterations, 0) < 0 OR coalesce(p_tool_calls, 0) < 0 OR coalesce(p_tokens, 0) < 0 THEN
    RAISE EXCEPTION 'invalid argument: increments must not be negative (iterations %, tool calls %, tokens %)',
        p_iterations, p_tool_calls, p_tokens
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_session_cost(coalesce(p_cost, 0), 'cost increment');
  PERFORM keen.lock_event_stream(v_user_id);
  v_before := keen.lock_session(p_session_id);
  IF v_before.execution_status <> 'running' THEN
    RAISE EXCEPTION 'invalid state transition: session % is %; only a running session reports progress',
        pg_catalog.quote_literal(p_session_id), v_before.execution_status
      USING ERRCODE = 'KE007';
  END IF;
  -- Totals stay inside their columns (and the day's figures inside theirs at commit): a
  -- report that would overflow is refused here, not with a raw 22003 later.
  IF v_before.iteration_count::bigint + coalesce(p_iterations, 0) > 2147483647
     OR v_before.tool_calls_count::bigint + coalesce(p_tool_calls, 0) > 2147483647
     OR v_before.tokens_used::numeric + coalesce(p_tokens, 0) > 1000000000000 THEN
    RAISE EXCEPTION 'invalid argument: session % would pass its counter limits (iterations and tool calls 2147483647, tokens 10^12)',
        pg_catalog.quote_literal(p_session_id)
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_session_cost(v_before.total_cost + coalesce(p_cost, 0), 'total cost');
  -- A backward phase is refused by trigger _010_check_update with KE007.
  UPDATE keen.agent_sessions AS s
     SET current_phase = coalesce(p_phase, s.current_phase),
         phase_started_at = CASE WHEN coalesce(p_phase, s.current_phase) = s.current_phase
                                 THEN s.phase_started_at ELSE pg_catalog.now() END,
         iteration_count = s.iteration_count + coalesce(p_iterations, 0),
         tool_calls_count = s.tool_calls_count + coalesce(p_tool_calls, 0),
         tokens_used = s.tokens_used + coalesce(p_tokens, 0),
         total_cost = s.total_cost + coalesce(p_cost, 0),
         last_activity_at = pg_catalog.now(),
         last_event_seq = s.last_event_seq + 1
   WHERE s.user_id = v_user_id AND s.id = v_before.id
  RETURNING s.* INTO v_session;

  PERFORM keen.append_session_event(v_session, 'session.progress', pg_catalog.jsonb_build_object(
    'current_phase', v_session.current_phase,
    'previous_phase', v_before.current_phase,
    'iterations', coalesce(p_iterations, 0),
    'tool_calls', coalesce(p_tool_calls, 0),
    'tokens', coalesce(p_tokens, 0),
    'cost', coalesce(p_cost, 0),
    'iteration_count', v_session.iteration_count,
    'tool_calls_count', v_session.tool_calls_count,
    'tokens_used', v_session.tokens_used,
    'total_cost', v_session.total_cost));
  RETURN v_session;
END
$$;

CREATE OR REPLACE FUNCTION keen.complete_session(
  p_session_id        text,
  p_success           boolean,
  p_total_cost        numeric DEFAULT NULL,
  p_files_created     text[]  DEFAULT '{}',
  p_files_modified    text[]  DEFAULT '{}',
  p_files_deleted     text[]  DEFAULT '{}',
  p_completion_report jsonb   DEFAULT NULL,
  p_error_message     text    DEFAULT NULL
)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_account_status text;
  v_status text := CASE WHEN p_success THEN 'completed' ELSE 'failed' END;
  v_before keen.agent_sessions;
  v_session keen.agent_sessions;
  v_total numeric;
  v_charge numeric;
  v_hold_id uuid;
  v_hold_amount numeric;
  v_captured numeric := 0;
  v_capture_id uuid;
  v_deduct_id uuid;
BEGIN
  IF p_success IS NULL THEN
    RAISE EXCEPTION 'invalid argument: p_success is required' USING ERRCODE = 'KE013';
  END IF;
  IF p_total_cost IS NOT NULL THEN
    PERFORM keen.check_session_cost(p_total_cost, 'total cost');
  END IF;
  PERFORM keen.check_text_array(p_files_created, 'files created', 10000, 4096);
  PERFORM keen.check_text_array(p_files_modified, 'files modified', 10000, 4096);
  PERFORM keen.check_text_array(p_files_deleted, 'files deleted', 10000, 4096);
  PERFORM keen.check_jsonb(p_completion_report, 'completion report', 1048576);
  PERFORM keen.check_text(p_error_message, 'error message', 10000);
  PERFORM keen.lock_event_stream(v_user_id);
  v_before := keen.lock_session(p_session_id);

  IF v_before.execution_status <> 'running' THEN
    -- A retry with the same arguments gets the finished row back and charges nothing.
    IF v_before.execution_status = v_status
       AND (p_total_cost IS NULL OR v_before.total_cost = p_total_cost)
       AND v_before.files_created = coalesce(p_files_created, '{}')
       AND v_before.files_modified = coalesce(p_files_modified, '{}')
       AND v_before.files_deleted = coalesce(p_files_deleted, '{}')
       AND v_before.completion_report IS NOT DISTINCT FROM p_completion_report
       AND v_before.error_message IS NOT DISTINCT FROM p_error_message THEN
      RETURN v_before;
    END IF;
    RAISE EXCEPTION 'invalid state transition: session % is already %', pg_catalog.quote_literal(p_session_id),
        v_before.execution_status
      USING ERRCODE = 'KE007',
            HINT = 'Completing again is only accepted with the same arguments (an idempotent retry).';
  END IF;
  -- A suspended or closed account completes nothing, not even at cost 0 (the deduction
  -- would refuse a charge; a zero cost would otherwise slip past it).
  SELECT a.account_status INTO v_account_status FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id;
  IF v_account_status IS DISTINCT FROM 'active' THEN
    RAISE EXCEPTION 'account not active: credit account is %', coalesce(v_account_status, 'missing')
      USING ERRCODE = 'KE012', HINT = 'Cancel the session instead; it charges nothing.';
  END IF;

  -- The charge is the session's cost (given, else accumulated by progress reports),
  -- raised to the ledger's 4 decimals (keen.round_cost); a zero cost charges nothing.
  v_total := coalesce(p_total_cost, v_before.total_cost);
  v_charge := pg_catalog.round(keen.round_cost(v_total), 4);
  SELECT h.id, h.amount INTO v_hold_id, v_hold_amount
    FROM keen.credit_holds AS h
   WHERE h.user_id = v_user_id AND h.session_id = v_before.id AND h.status = 'active'
     AND h.expires_at > pg_catalog.now()
   ORDER BY h.created_at, h.id
   LIMIT 1;
  IF v_hold_id IS NOT NULL AND v_charge > 0 THEN
    -- A capture takes at most the hold; the rest is deducted below.
    v_captured := LEAST(v_charge, v_hold_amount);
    SELECT t.id INTO v_capture_id
      FROM keen.capture_hold(p_hold_id => v_hold_id, p_amount => v_captured,
                             p_description => 'agent session ' || p_session_id) AS t;
  END IF;
  IF v_charge > v_captured THEN
    -- The key makes a replayed completion (or a concurrent one) charge once.
    SELECT t.id INTO v_deduct_id
      FROM keen.deduct_credits(p_amount => v_charge - v_captured, p_session_id => v_before.id,
                               p_description => 'agent session ' || p_session_id,
                               p_idempotency_key => 'session:' || v_before.id::text) AS t;
  END IF;
  -- Holds the session no longer needs go back to the available balance.
  FOR v_hold_id IN
    SELECT h.id FROM keen.credit_holds AS h
     WHERE h.user_id = v_user_id AND h.session_id = v_before.id AND h.status = 'active'
     ORDER BY h.created_at, h.id
  LOOP
    PERFORM keen.release_hold(p_hold_id => v_hold_id);
  END LOOP;

  UPDATE keen.agent_sessions AS s
     SET execution_status = v_status,
         end_time = GREATEST(pg_catalog.now(), s.start_time),
         current_phase = CASE WHEN p_success THEN 'COMPLETE' ELSE s.current_phase END,
         phase_started_at = CASE WHEN p_success AND s.current_phase <> 'COMPLETE'
                                 THEN pg_catalog.now() ELSE s.phase_started_at END,
         total_cost = v_total,
         files_created = coalesce(p_files_created, '{}'),
         files_modified = coalesce(p_files_modified, '{}'),
         files_deleted = coalesce(p_files_deleted, '{}'),
         completion_report = p_completion_report,
         error_message = p_error_message,
         last_activity_at = pg_catalog.now(),
         last_event_seq = s.last_event_seq + 1
   WHERE s.user_id = v_user_id AND s.id = v_before.id
  RETURNING s.* INTO v_session;

  PERFORM keen.append_session_event(v_session, 'session.' || v_status, pg_catalog.jsonb_build_object(
    'total_cost', v_total,
    'charged', v_charge,
    'capture_transaction_id', v_capture_id,
    'usage_transaction_id', v_deduct_id,
    'files_created', pg_catalog.cardinality(v_session.files_created),
    'files_modified', pg_catalog.cardinality(v_session.files_modified),
    'files_deleted', pg_catalog.cardinality(v_session.files_deleted)));
  RETURN v_session;
END
$$;

CREATE OR REPLACE FUNCTION keen.cancel_session(p_session_id text)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_session keen.agent_sessions;
  v_cancelled keen.agent_sessions;
  v_row keen.agent_sessions;
  v_level uuid[];
  v_hold_id uuid;
BEGIN
  PERFORM keen.lock_event_stream(v_user_id);
  v_session := keen.lock_session(p_session_id);
  IF v_session.execution_status = 'cancelled' THEN
    RETURN v_session;
  ELSIF v_session.execution_status <> 'running' THEN
    RAISE EXCEPTION 'invalid state transition: session % is %; only a running session can be cancelled',
        pg_catalog.quote_literal(p_session_id), v_session.execution_status
      USING ERRCODE = 'KE007';
  END IF;

  -- Level by level, top down: a level's children are read by a statement that starts
  -- after their running parents were locked (and cancelled), which accept no new child,
  -- so no running descendant is missed. Finished sessions are walked through: their
  -- running descendants are cancelled too.
  v_level := ARRAY[v_session.id];
  WHILE v_level IS NOT NULL LOOP
    FOR v_row IN
      UPDATE keen.agent_sessions AS s
         SET execution_status = 'cancelled',
             end_time = GREATEST(pg_catalog.now(), s.start_time),
             last_activity_at = pg_catalog.now(),
             last_event_seq = s.last_event_seq + 1
       WHERE s.user_id = v_user_id AND s.id = ANY (v_level) AND s.execution_status = 'running'
      RETURNING s.*
    LOOP
      PERFORM keen.append_session_event(v_row, 'session.cancelled',
        pg_catalog.jsonb_build_object('cancelled_with', v_session.id));
      -- A cancelled session charges nothing: its holds go back to the available balance.
      FOR v_hold_id IN
        SELECT h.id FROM keen.credit_holds AS h
         WHERE h.user_id = v_user_id AND h.session_id = v_row.id AND h.status = 'active'
         ORDER BY h.created_at, h.id
      LOOP
        PERFORM keen.release_hold(p_hold_id => v_hold_id);
      END LOOP;
      IF v_row.id = v_session.id THEN
        v_cancelled := v_row;
      END IF;
    END LOOP;
    SELECT pg_catalog.array_agg(s.id ORDER BY s.id) INTO v_level
      FROM keen.agent_sessions AS s
     WHERE s.user_id = v_user_id AND s.parent_session_id = ANY (v_level);
  END LOOP;
  RETURN v_cancelled;
END
$$;

CREATE OR REPLACE FUNCTION keen.open_connection(
  p_connection_id     text,
  p_client_ip         inet,
  p_user_agent        text    DEFAULT NULL,
  p_client_type       text    DEFAULT 'web',
  p_session_id        text    DEFAULT NULL,
  p_subscribed_events text[]  DEFAULT '{}',
  p_session_filters   text[]  DEFAULT NULL
)
RETURNS keen.websocket_connections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_session_uuid uuid;
  v_filters uuid[];
  v_connection keen.websocket_connections;
BEGIN
  IF p_connection_id IS NULL OR p_client_ip IS NULL THEN
    RAISE EXCEPTION 'invalid argument: connection id and client ip are required' USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_text(p_connection_id, 'connection id', 255);
  PERFORM keen.check_text(p_user_agent, 'user agent', 512);
  PERFORM keen.check_text_array(p_subscribed_events, 'subscribed events', 64, 63);
  PERFORM keen.check_text_array(p_session_filters, 'session filters', 64, 128);
  IF NOT EXISTS (SELECT FROM keen.users AS u WHERE u.user_id = v_user_id AND u.id = v_user_id) THEN
    RAISE EXCEPTION 'no tenant context: user % does not exist', v_user_id USING ERRCODE = 'KE010';
  END IF;
  -- NULL stands for the default, so bindings may pass every optional argument.
  IF coalesce(p_client_type, 'web') NOT IN ('web', 'cli', 'ide', 'api') THEN
    RAISE EXCEPTION 'invalid argument: unknown client type %', keen.text_prefix(p_client_type)
      USING ERRCODE = 'KE013', HINT = 'Client types are web, cli, ide, api.';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_subscribed_events) AS e(name)
              WHERE e.name IS NULL OR e.name !~ '^[a-z*][a-z_.*]{0,62}$') THEN
    RAISE EXCEPTION 'invalid argument: subscribed events are not event type patterns'
      USING ERRCODE = 'KE013', HINT = 'Use event types such as session.progress, or session.* and *.';
  END IF;
  IF p_session_id IS NOT NULL THEN
    v_session_uuid := keen.session_uuid(p_session_id);
  END IF;
  -- Session filters name the caller's sessions by their external ids; each must exist.
  SELECT pg_catalog.array_agg(keen.session_uuid(f.session_id) ORDER BY f.ord) INTO v_filters
    FROM pg_catalog.unnest(p_session_filters) WITH ORDINALITY AS f(session_id, ord);

  INSERT INTO keen.websocket_connections AS c
         (user_id, session_id, connection_id, client_ip, user_agent, client_type,
          subscribed_events, session_filters)
  VALUES (v_user_id, v_session_uuid, p_connection_id, p_client_ip, p_user_agent, coalesce(p_client_type, 'web'),
          coalesce(p_subscribed_events, '{}'), v_filters)
  ON CONFLICT ON CONSTRAINT websocket_connections_user_id_connection_id_key DO NOTHING
  RETURNING c.* INTO v_connection;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'already exists: connection %', pg_catalog.quote_literal(p_connection_id)
      USING ERRCODE = 'KE009', DETAIL = 'websocket_connections_user_id_connection_id_key';
  END IF;
  RETURN v_connection;
END
$$;

CREATE OR REPLACE FUNCTION keen.lock_connection(p_connection_id text)
RETURNS keen.websocket_connections
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_connection keen.websocket_connections;
BEGIN
  PERFORM keen.check_text(p_connection_id, 'connection id', 255);
  SELECT c.* INTO v_connection
    FROM keen.websocket_connections AS c
   WHERE c.user_id = v_user_id AND c.connection_id = p_connection_id
     FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: connection %', coalesce(pg_catalog.quote_literal(p_connection_id), 'NULL')
      USING ERRCODE = 'KE006';
  END IF;
  RETURN v_connection;
END
$$;

CREATE OR REPLACE FUNCTION keen.ping_connection(p_connection_id text)
RETURNS keen.websocket_connections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_connection keen.websocket_connections := keen.lock_connection(p_connection_id);
BEGIN
  IF v_connection.connection_status <> 'active' THEN
    RAISE EXCEPTION 'invalid state transition: connection % is %', pg_catalog.quote_literal(p_connection_id),
        v_connection.connection_status
      USING ERRCODE = 'KE007', HINT = 'A closed or reaped connection is not revived: open a new one.';
  END IF;
  UPDATE keen.websocket_connections AS c
     SET last_ping_at = pg_catalog.now()
   WHERE c.user_id = v_connection.user_id AND c.id = v_connection.id
  RETURNING c.* INTO v_connection;
  RETURN v_connection;
END
$$;

CREATE OR REPLACE FUNCTION keen.close_connection(p_connection_id text)
RETURNS keen.websocket_connections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_connection keen.websocket_connections := keen.lock_connection(p_connection_id);
BEGIN
  -- Closing is idempotent: a closed or reaped connection comes back unchanged.
  IF v_connection.connection_status = 'active' THEN
    UPDATE keen.websocket_connections AS c
       SET connection_status = 'closed', disconnected_at = pg_catalog.now()
     WHERE c.user_id = v_connection.user_id AND c.id = v_connection.id
    RETURNING c.* INTO v_connection;
  END IF;
  RETURN v_connection;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_session_events__notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- A wake-up with an empty payload: every login that may connect can LISTEN, so the
  -- payload names no tenant, user, session or event; listeners read their own events
  -- through RLS after their cursor. Equal payloads fold into one per transaction.
  PERFORM pg_catalog.pg_notify('keen_events', '');
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_websocket_connections__sync_session()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
  v_session_id uuid;
BEGIN
  FOR v_session_id IN
    SELECT DISTINCT x.id
      FROM (VALUES (CASE WHEN TG_OP <> 'INSERT' THEN OLD.session_id END),
                   (CASE WHEN TG_OP <> 'DELETE' THEN NEW.session_id END)) AS x(id)
     WHERE x.id IS NOT NULL
  LOOP
    -- Lock first, then read in a new statement: its snapshot sees every connection
    -- committed by whoever held the lock before, so concurrent opens and closes of one
    -- session's connections cannot overwrite each other's list.
    PERFORM FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id AND s.id = v_session_id FOR NO KEY UPDATE;
    UPDATE keen.agent_sessions AS s
       SET websocket_connections = ARRAY(
             SELECT c.connection_id FROM keen.websocket_connections AS c
              WHERE c.user_id = v_user_id AND c.session_id = v_session_id AND c.connection_status = 'active'
              ORDER BY c.connection_id)
     WHERE s.user_id = v_user_id AND s.id = v_session_id;
  END LOOP;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION keen.lock_credit_account(p_user_id uuid)
RETURNS keen.credit_accounts
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_account keen.credit_accounts;
BEGIN
  -- Every credit function starts here: the account row lock serializes all of its money.
  SELECT a.* INTO v_account FROM keen.credit_accounts AS a WHERE a.user_id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', p_user_id
      USING ERRCODE = 'KE006';
  END IF;
  -- Holds past their expiry stop reserving credits now, not only when the sweeper runs.
  IF v_account.held_amount > 0 THEN
    UPDATE keen.credit_holds AS h SET status = 'expired'
     WHERE h.user_id = p_user_id AND h.account_id = v_account.id AND h.status = 'active'
       AND h.expires_at <= pg_catalog.now();
    IF FOUND THEN
      SELECT a.* INTO v_account FROM keen.credit_accounts AS a WHERE a.user_id = p_user_id AND a.id = v_account.id;
    END IF;
  END IF;
  RETURN v_account;
END
$$;

CREATE OR REPLACE FUNCTION keen.find_idempotent_entry(p_account_id uuid, p_idempotency_key text, p_fingerprint text)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_entry keen.credit_transactions;
BEGIN
  IF p_idempotency_key IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM keen.check_idempotency_key(p_idempotency_key);
  SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
   WHERE t.user_id = v_user_id AND t.account_id = p_account_id
     AND t.idempotency_key = p_idempotency_key;
  IF FOUND AND v_entry.request_fingerprint IS DISTINCT FROM p_fingerprint THEN
    RAISE EXCEPTION 'idempotency key % was used with different arguments', keen.text_prefix(p_idempotency_key)
      USING ERRCODE = 'KE005',
            DETAIL = pg_catalog.format('original entry %s (%s %s)', v_entry.id, v_entry.transaction_type, v_entry.amount),
            HINT = 'Use a new key for a new operation.';
  END IF;
  RETURN v_entry;
END
$$;

CREATE OR REPLACE FUNCTION keen.require_agent_session(p_session_id uuid)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  -- Another tenant's session is "not found" (named by value: the SECURITY DEFINER callers
  -- read through the owner's policy, which sees every row).
  IF p_session_id IS NOT NULL
     AND NOT EXISTS (SELECT FROM keen.agent_sessions AS s
                      WHERE s.user_id = v_user_id AND s.id = p_session_id) THEN
    RAISE EXCEPTION 'agent session % not found', p_session_id USING ERRCODE = 'KE006';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_credit_transactions__post()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_account keen.credit_accounts;
  v_hold keen.credit_holds;
  v_held_after numeric;
BEGIN
  -- Lock the account (already locked by the credit functions; a direct INSERT gets it here).
  SELECT a.* INTO v_account FROM keen.credit_accounts AS a
   WHERE a.user_id = NEW.user_id AND a.id = coalesce(NEW.account_id, a.id)
   FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account % not found for user %', NEW.account_id, NEW.user_id USING ERRCODE = 'KE006';
  END IF;
  IF (NEW.amount < 0 AND v_account.account_status <> 'active')
     OR (NEW.amount > 0 AND v_account.account_status = 'closed') THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status
      USING ERRCODE = 'KE012', DETAIL = coalesce(v_account.suspended_reason, '');
  END IF;
  NEW.account_id := v_account.id;
  -- Server time, never the caller's: the spending windows are counted from it.
  NEW.created_at := pg_catalog.now();
  v_held_after := v_account.held_amount;
  IF NEW.hold_id IS NOT NULL THEN
    IF NEW.transaction_type <> 'usage' THEN
      RAISE EXCEPTION 'only usage entries capture a hold, not %', NEW.transaction_type USING ERRCODE = 'KE013';
    END IF;
    SELECT h.* INTO v_hold FROM keen.credit_holds AS h
     WHERE h.user_id = NEW.user_id AND h.id = NEW.hold_id AND h.account_id = v_account.id FOR UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'hold % not found', NEW.hold_id USING ERRCODE = 'KE006';
    END IF;
    IF v_hold.status <> 'active' OR v_hold.expires_at <= pg_catalog.now() THEN
      RAISE EXCEPTION 'hold % cannot be captured: it is %', v_hold.id,
        CASE WHEN v_hold.status = 'active' THEN 'expired' ELSE v_hold.status END
        USING ERRCODE = 'KE007', HINT = 'Charge with keen.deduct_credits() instead.';
    END IF;
    IF -NEW.amount > v_hold.amount THEN
      RAISE EXCEPTION 'invalid amount: capture % exceeds hold %', -NEW.amount, v_hold.amount
        USING ERRCODE = 'KE004', HINT = 'Capture at most the held amount; deduct the rest with keen.deduct_credits().';
    END IF;
    NEW.session_id := coalesce(NEW.session_id, v_hold.session_id);
    v_held_after := v_held_after - v_hold.amount;
  END IF;
  NEW.entry_no := v_account.last_entry_no + 1;
  NEW.balance_before := v_account.current_balance;
  NEW.balance_after := v_account.current_balance + NEW.amount;
  -- Available = balance minus the other active holds (a capture frees its own hold).
  IF NEW.amount < 0 AND NEW.balance_after < v_held_after THEN
    RAISE EXCEPTION 'insufficient credits: required %, available %', -NEW.amount, v_account.current_balance - v_held_after
      USING ERRCODE = 'KE001',
            DETAIL = pg_catalog.format('balance %s, held %s', v_account.current_balance, v_held_after),
            HINT = 'Add credits or release holds.';
  END IF;
  -- A capture was counted against the limits when its hold was placed.
  IF NEW.transaction_type = 'usage' AND NEW.hold_id IS NULL THEN
    PERFORM keen.check_spending_limits(v_account, -NEW.amount);
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_credit_transactions__apply()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_enabled boolean;
  v_threshold numeric;
  v_recharge numeric;
  v_request_id uuid;
BEGIN
  -- The hold first: freeing it before the balance drops keeps held_amount <= balance.
  IF NEW.hold_id IS NOT NULL THEN
    UPDATE keen.credit_holds AS h
       SET status = 'captured', captured_amount = -NEW.amount, capture_transaction_id = NEW.id
     WHERE h.user_id = NEW.user_id AND h.id = NEW.hold_id;
  END IF;
  -- The guard trigger on credit_accounts checks this against the entry and derives the
  -- lifetime totals and spending counters from it.
  UPDATE keen.credit_accounts AS a
     SET current_balance = NEW.balance_after, last_entry_no = NEW.entry_no
   WHERE a.user_id = NEW.user_id AND a.id = NEW.account_id
  RETURNING a.auto_recharge_enabled, a.auto_recharge_threshold, a.auto_recharge_amount
       INTO v_enabled, v_threshold, v_recharge;
  -- Auto-recharge outbox: one open request per account (unique partial index), its id
  -- derived from this entry.
  IF NEW.transaction_type = 'usage' AND v_enabled AND NEW.balance_after < v_threshold THEN
    INSERT INTO keen.recharge_requests AS r
           (id, user_id, account_id, amount, triggered_by_transaction_id, balance_at_request)
    VALUES (pg_catalog.md5(NEW.id::text || ':recharge')::uuid, NEW.user_id, NEW.account_id,
            v_recharge, NEW.id, NEW.balance_after)
    ON CONFLICT (account_id) WHERE status IN ('pending', 'processing') DO NOTHING
    RETURNING r.id INTO v_request_id;
    IF v_request_id IS NOT NULL THEN
      -- A wake-up for the billing workers, naming nothing: they claim pending requests.
      PERFORM pg_catalog.pg_notify('keen_recharge', '');
    END IF;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_credit_accounts__guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_entry record;  -- the ledger row and the user's timezone
  v_date date;
  v_month date;
  v_held numeric;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF (NEW.current_balance, NEW.held_amount, NEW.lifetime_purchased, NEW.lifetime_spent,
        NEW.last_entry_no, NEW.spent_today, NEW.spent_this_month) <> (0, 0, 0, 0, 0, 0, 0) THEN
      RAISE EXCEPTION 'a credit account opens empty: credits arrive through the ledger'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.id <> OLD.id OR NEW.user_id <> OLD.user_id THEN
    RAISE EXCEPTION 'a credit account''s id and user_id never change' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.account_status, NEW.suspended_reason) IS DISTINCT FROM (OLD.account_status, OLD.suspended_reason)
     AND NOT pg_catalog.pg_has_role(current_user, 'keen_owner', 'MEMBER') THEN
    RAISE EXCEPTION 'only operators change a credit account''s status' USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- Derived columns are never written directly; they are computed below.
  IF (NEW.lifetime_purchased, NEW.lifetime_spent, NEW.spent_today_date, NEW.spent_today,
      NEW.spent_month_start, NEW.spent_this_month)
     IS DISTINCT FROM (OLD.lifetime_purchased, OLD.lifetime_spent, OLD.spent_today_date, OLD.spent_today,
                       OLD.spent_month_start, OLD.spent_this_month) THEN
    RAISE EXCEPTION 'lifetime totals and spending counters are derived from the ledger'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.last_entry_no <> OLD.last_entry_no OR NEW.current_balance <> OLD.current_balance THEN
    -- A balance moves only to the balance_after of the next ledger entry, which must exist.
    -- With the user's time zone in the same statement (one statement less per entry).
    SELECT t.*, u.timezone INTO v_entry
      FROM keen.credit_transactions AS t LEFT JOIN keen.users AS u ON u.id = OLD.user_id
     WHERE t.user_id = OLD.user_id AND t.account_id = OLD.id AND t.entry_no = NEW.last_entry_no;
    IF NOT FOUND OR NEW.last_entry_no <> OLD.last_entry_no + 1
       OR v_entry.balance_before <> OLD.current_balance OR v_entry.balance_after <> NEW.current_balance THEN
      RAISE EXCEPTION 'credit account % balance changes only through a ledger entry', OLD.id
        USING ERRCODE = 'insufficient_privilege', HINT = 'Use keen.add_credits() or keen.deduct_credits().';
    END IF;
    IF v_entry.transaction_type = 'purchase' THEN
      NEW.lifetime_purchased := OLD.lifetime_purchased + v_entry.amount;
    ELSIF v_entry.transaction_type = 'usage' THEN
      NEW.lifetime_spent := OLD.lifetime_spent - v_entry.amount;
      -- As keen.credit_local_date: the user's day, UTC when the user row is not visible.
      v_date := (v_entry.created_at AT TIME ZONE coalesce(v_entry.timezone, 'UTC'))::date;
      v_month := pg_catalog.date_trunc('month', v_date)::date;
      IF OLD.spent_today_date = v_date THEN
        NEW.spent_today := OLD.spent_today - v_entry.amount;
      ELSIF OLD.spent_today_date IS NULL OR OLD.spent_today_date < v_date THEN
        NEW.spent_today_date := v_date;
        NEW.spent_today := -v_entry.amount;
      END IF;
      IF OLD.spent_month_start = v_month THEN
        NEW.spent_this_month := OLD.spent_this_month - v_entry.amount;
      ELSIF OLD.spent_month_start IS NULL OR OLD.spent_month_start < v_month THEN
        NEW.spent_month_start := v_month;
        NEW.spent_this_month := -v_entry.amount;
      END IF;
    END IF;
  END IF;
  IF NEW.held_amount <> OLD.held_amount THEN
    SELECT coalesce(sum(h.amount), 0) INTO v_held FROM keen.credit_holds AS h
     WHERE h.user_id = OLD.user_id AND h.account_id = OLD.id AND h.status = 'active';
    IF v_held <> NEW.held_amount THEN
      RAISE EXCEPTION 'credit account % held_amount must equal its active holds (%)', OLD.id, v_held
        USING ERRCODE = 'insufficient_privilege';
    END IF;
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_credit_holds__guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (NEW.id, NEW.user_id, NEW.account_id, NEW.session_id, NEW.amount, NEW.idempotency_key,
      NEW.request_fingerprint, NEW.expires_at, NEW.created_at)
     IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.account_id, OLD.session_id, OLD.amount, OLD.idempotency_key,
                       OLD.request_fingerprint, OLD.expires_at, OLD.created_at) THEN
    RAISE EXCEPTION 'a hold''s terms never change' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.status = OLD.status AND NEW IS NOT DISTINCT FROM OLD THEN
    RETURN NEW;
  END IF;
  IF OLD.status <> 'active' THEN
    RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.status USING ERRCODE = 'KE007';
  END IF;
  IF NEW.status = 'captured' THEN
    -- Captured only by its ledger entry (inserted just before, by the ledger trigger).
    IF NOT EXISTS (SELECT FROM keen.credit_transactions AS t
                    WHERE t.user_id = NEW.user_id AND t.id = NEW.capture_transaction_id AND t.hold_id = NEW.id
                      AND t.amount = -NEW.captured_amount) THEN
      RAISE EXCEPTION 'hold % is captured only by a ledger entry', OLD.id
        USING ERRCODE = 'insufficient_privilege', HINT = 'Use keen.capture_hold().';
    END IF;
  ELSIF NEW.status = 'expired' AND OLD.expires_at > pg_catalog.now() THEN
    RAISE EXCEPTION 'hold % expires only at %', OLD.id, OLD.expires_at USING ERRCODE = 'KE007';
  ELSIF NEW.status NOT IN ('released', 'expired') THEN
    RAISE EXCEPTION 'hold % cannot become %', OLD.id, NEW.status USING ERRCODE = 'KE007';
  ELSIF NEW.captured_amount IS NOT NULL OR NEW.capture_transaction_id IS NOT NULL THEN
    RAISE EXCEPTION 'a % hold has no capture', NEW.status USING ERRCODE = 'insufficient_privilege';
  END IF;
  NEW.resolved_at := pg_catalog.now();
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_credit_holds__apply()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Recomputed rather than incremented: right even when one statement changes many holds.
  UPDATE keen.credit_accounts AS a
     SET held_amount = (SELECT coalesce(sum(h.amount), 0) FROM keen.credit_holds AS h
                         WHERE h.user_id = NEW.user_id AND h.account_id = NEW.account_id AND h.status = 'active')
   WHERE a.user_id = NEW.user_id AND a.id = NEW.account_id;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION keen.deduct_credits(
  p_amount numeric,
  p_session_id uuid DEFAULT NULL,
  p_description text DEFAULT NULL,
  p_idempotency_key text DEFAULT NULL)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_amount numeric := keen.validate_credit_amount(p_amount);
  v_account keen.credit_accounts;
  v_fingerprint text;
  v_entry keen.credit_transactions;
BEGIN
  -- Before the lock: all of one account's deductions queue on it, so it is held no longer
  -- than it must be.
  PERFORM keen.check_text(p_description, 'description', 1000);
  v_fingerprint := keen.credit_fingerprint('deduct', pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'session_id', p_session_id, 'description', p_description));
  v_account := keen.lock_credit_account(v_user_id);
  -- Looked up under the account lock: a concurrent retry waits and then finds the row.
  IF p_idempotency_key IS NOT NULL THEN
    v_entry := keen.find_idempotent_entry(v_account.id, p_idempotency_key, v_fingerprint);
    IF v_entry.id IS NOT NULL THEN
      RETURN v_entry;
    END IF;
  END IF;
  IF p_session_id IS NOT NULL THEN
    PERFORM keen.require_agent_session(p_session_id);
  END IF;
  -- Balance, holds and limits are checked by the ledger's insert trigger, under the same lock.
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, transaction_type, amount, session_id, description,
          idempotency_key, request_fingerprint)
  VALUES (keen.idempotent_id(v_account.id, 'entry', p_idempotency_key), v_user_id, v_account.id,
          'usage', -v_amount, p_session_id, coalesce(p_description, 'usage'),
          p_idempotency_key, v_fingerprint)
  RETURNING t.* INTO v_entry;
  RETURN v_entry;
END
$$;

CREATE OR REPLACE FUNCTION keen.add_credits(
  p_amount numeric,
  p_transaction_type text DEFAULT 'purchase',
  p_description text DEFAULT NULL,
  p_idempotency_key text DEFAULT NULL,
  p_stripe_payment_intent_id text DEFAULT NULL,
  p_metadata jsonb DEFAULT NULL)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_amount numeric := keen.validate_credit_amount(p_amount);
  v_account keen.credit_accounts;
  v_fingerprint text;
  v_entry keen.credit_transactions;
  -- NULL means the default, as for every optional argument.
  v_type text := coalesce(p_transaction_type, 'purchase');
BEGIN
  IF v_type NOT IN ('purchase', 'refund', 'adjustment') THEN
    RAISE EXCEPTION 'invalid transaction type for add_credits: %', keen.text_prefix(v_type)
      USING ERRCODE = 'KE013', HINT = 'One of purchase, refund, adjustment.';
  END IF;
  PERFORM keen.check_text(p_description, 'description', 1000);
  PERFORM keen.check_text(p_stripe_payment_intent_id, 'payment intent id', 255);
  PERFORM keen.check_jsonb(p_metadata, 'metadata', 16384);
  v_account := keen.lock_credit_account(v_user_id);
  v_fingerprint := keen.credit_fingerprint('add', pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'transaction_type', v_type,
    'description', p_description, 'stripe_payment_intent_id', p_stripe_payment_intent_id,
    'metadata', p_metadata));
  v_entry := keen.find_idempotent_entry(v_account.id, p_idempotency_key, v_fingerprint);
  -- A payment intent is credited once per tenant (a retry with the same arguments gets the
  -- original entry; anything else is KE005, never a raw unique violation). Looked up by
  -- value under the account lock, so a concurrent retry waits and then finds the row.
  IF v_entry.id IS NULL AND p_stripe_payment_intent_id IS NOT NULL THEN
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = v_user_id AND t.stripe_payment_intent_id = p_stripe_payment_intent_id;
    IF FOUND AND (v_entry.request_fingerprint IS DISTINCT FROM v_fingerprint
                  OR v_entry.idempotency_key IS DISTINCT FROM p_idempotency_key) THEN
      RAISE EXCEPTION 'payment intent % was credited with different arguments', keen.text_prefix(p_stripe_payment_intent_id)
        USING ERRCODE = 'KE005', HINT = 'A payment intent credits once: retry with the same arguments and key.';
    END IF;
  END IF;
  IF v_entry.id IS NOT NULL THEN
    RETURN v_entry;
  END IF;
  -- The balance column holds less than 10^8 (and the lifetime totals less than 10^10).
  IF v_account.current_balance + v_amount >= 100000000
     OR (v_type = 'purchase' AND v_account.lifetime_purchased + v_amount >= 10000000000) THEN
    RAISE EXCEPTION 'invalid amount: % would take the balance % past its ceiling 99999999.9999', v_amount,
        v_account.current_balance
      USING ERRCODE = 'KE004';
  END IF;
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, transaction_type, amount, description, metadata, idempotency_key,
          request_fingerprint, stripe_payment_intent_id)
  VALUES (keen.idempotent_id(v_account.id, 'entry', p_idempotency_key), v_user_id, v_account.id,
          v_type, v_amount, coalesce(p_description, v_type),
          coalesce(p_metadata, '{}'::jsonb), p_idempotency_key, v_fingerprint, p_stripe_payment_intent_id)
  RETURNING t.* INTO v_entry;
  RETURN v_entry;
END
$$;

CREATE OR REPLACE FUNCTION keen.hold_credits(
  p_session_id uuid DEFAULT NULL,
  p_amount numeric DEFAULT NULL,
  p_idempotency_key text DEFAULT NULL,
  p_expires_in interval DEFAULT interval '1 hour')
RETURNS keen.credit_holds
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_amount numeric := keen.validate_credit_amount(p_amount);
  v_account keen.credit_accounts;
  v_fingerprint text;
  v_hold keen.credit_holds;
  v_expires_in interval := coalesce(p_expires_in, interval '1 hour');
BEGIN
  IF v_expires_in <= interval '0' OR v_expires_in > interval '7 days' THEN
    RAISE EXCEPTION 'invalid hold expiry: % (must be above 0 and at most 7 days)', v_expires_in
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_idempotency_key(p_idempotency_key);
  v_account := keen.lock_credit_account(v_user_id);
  v_fingerprint := keen.credit_fingerprint('hold', pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'session_id', p_session_id, 'expires_in', v_expires_in));
  IF p_idempotency_key IS NOT NULL THEN
    SELECT h.* INTO v_hold FROM keen.credit_holds AS h
     WHERE h.user_id = v_user_id AND h.account_id = v_account.id AND h.idempotency_key = p_idempotency_key;
    IF FOUND THEN
      IF v_hold.request_fingerprint IS DISTINCT FROM v_fingerprint THEN
        RAISE EXCEPTION 'idempotency key % was used with different arguments', keen.text_prefix(p_idempotency_key)
          USING ERRCODE = 'KE005', DETAIL = pg_catalog.format('original hold %s of %s', v_hold.id, v_hold.amount);
      END IF;
      RETURN v_hold;
    END IF;
  END IF;
  IF p_session_id IS NOT NULL THEN
    PERFORM keen.require_agent_session(p_session_id);
  END IF;
  -- Balance and limits are checked by the holds' insert trigger, under the same lock.
  INSERT INTO keen.credit_holds AS h
         (id, user_id, account_id, session_id, amount, idempotency_key, request_fingerprint, expires_at)
  VALUES (keen.idempotent_id(v_account.id, 'hold', p_idempotency_key), v_user_id, v_account.id,
          p_session_id, v_amount, p_idempotency_key, v_fingerprint, pg_catalog.now() + v_expires_in)
  RETURNING h.* INTO v_hold;
  RETURN v_hold;
END
$$;

CREATE OR REPLACE FUNCTION keen.capture_hold(
  p_hold_id uuid,
  p_amount numeric DEFAULT NULL,
  p_description text DEFAULT NULL)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_account keen.credit_accounts;
  v_hold keen.credit_holds;
  v_entry keen.credit_transactions;
BEGIN
  IF p_amount IS NOT NULL THEN
    PERFORM keen.validate_credit_amount(p_amount);
  END IF;
  PERFORM keen.check_text(p_description, 'description', 1000);
  v_account := keen.lock_credit_account(v_user_id);
  SELECT h.* INTO v_hold FROM keen.credit_holds AS h
   WHERE h.user_id = v_user_id AND h.id = p_hold_id AND h.account_id = v_account.id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'KE006';
  END IF;
  -- State, expiry and amount (at most the hold) are checked by the ledger's insert trigger;
  -- the entry id is derived from the hold, so a hold can never be captured twice.
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, transaction_type, amount, session_id, hold_id, description)
  VALUES (pg_catalog.md5(v_hold.id::text || ':capture')::uuid, v_user_id, v_account.id, 'usage',
          -coalesce(pg_catalog.round(p_amount, 4), v_hold.amount), v_hold.session_id, v_hold.id,
          coalesce(p_description, 'hold capture'))
  RETURNING t.* INTO v_entry;
  RETURN v_entry;
END
$$;

CREATE OR REPLACE FUNCTION keen.release_hold(p_hold_id uuid)
RETURNS keen.credit_holds
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_account keen.credit_accounts;
  v_hold keen.credit_holds;
BEGIN
  v_account := keen.lock_credit_account(v_user_id);
  SELECT h.* INTO v_hold FROM keen.credit_holds AS h
   WHERE h.user_id = v_user_id AND h.id = p_hold_id AND h.account_id = v_account.id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'KE006';
  END IF;
  IF v_hold.status = 'captured' THEN
    RAISE EXCEPTION 'hold % is already captured', p_hold_id USING ERRCODE = 'KE007';
  END IF;
  -- Releasing a released or expired hold is a no-op: its credits are free already.
  IF v_hold.status = 'active' THEN
    UPDATE keen.credit_holds AS h SET status = 'released'
     WHERE h.user_id = v_user_id AND h.id = p_hold_id RETURNING h.* INTO v_hold;
  END IF;
  RETURN v_hold;
END
$$;

CREATE OR REPLACE FUNCTION keen.set_spending_limits(
  p_daily_limit numeric DEFAULT NULL,
  p_monthly_limit numeric DEFAULT NULL)
RETURNS keen.credit_accounts
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_account keen.credit_accounts;
BEGIN
  IF p_daily_limit IS NOT NULL THEN
    PERFORM keen.validate_credit_amount(p_daily_limit, 'daily limit');
  END IF;
  IF p_monthly_limit IS NOT NULL THEN
    PERFORM keen.validate_credit_amount(p_monthly_limit, 'monthly limit');
  END IF;
  IF p_daily_limit > p_monthly_limit THEN
    RAISE EXCEPTION 'invalid limits: daily % above monthly %', p_daily_limit, p_monthly_limit USING ERRCODE = 'KE013';
  END IF;
  v_account := keen.lock_credit_account(v_user_id);
  UPDATE keen.credit_accounts AS a SET daily_limit = p_daily_limit, monthly_limit = p_monthly_limit
   WHERE a.user_id = v_user_id AND a.id = v_account.id RETURNING a.* INTO v_account;
  RETURN v_account;
END
$$;

CREATE OR REPLACE FUNCTION keen.configure_auto_recharge(
  p_enabled boolean,
  p_threshold numeric DEFAULT NULL,
  p_amount numeric DEFAULT NULL)
RETURNS keen.credit_accounts
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_account keen.credit_accounts;
BEGIN
  IF p_enabled IS NULL THEN
    RAISE EXCEPTION 'invalid argument: p_enabled is NULL' USING ERRCODE = 'KE013';
  END IF;
  IF p_threshold IS NOT NULL THEN
    PERFORM keen.validate_credit_amount(p_threshold, 'recharge threshold');
  END IF;
  IF p_amount IS NOT NULL THEN
    PERFORM keen.validate_credit_amount(p_amount, 'recharge amount');
  END IF;
  v_account := keen.lock_credit_account(v_user_id);
  UPDATE keen.credit_accounts AS a
     SET auto_recharge_enabled = p_enabled,
         auto_recharge_threshold = coalesce(p_threshold, a.auto_recharge_threshold),
         auto_recharge_amount = coalesce(p_amount, a.auto_recharge_amount)
   WHERE a.user_id = v_user_id AND a.id = v_account.id RETURNING a.* INTO v_account;
  RETURN v_account;
END
$$;

CREATE OR REPLACE FUNCTION keen.complete_recharge_request(
  p_request_id uuid,
  p_stripe_payment_intent_id text DEFAULT NULL)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_request keen.recharge_requests;
  v_entry keen.credit_transactions;
BEGIN
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r WHERE r.id = p_request_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'recharge request % not found', p_request_id USING ERRCODE = 'KE006';
  END IF;
  -- Account before request: the lock order of every credit function.
  PERFORM FROM keen.credit_accounts AS a WHERE a.id = v_request.account_id FOR UPDATE;
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r WHERE r.id = p_request_id FOR UPDATE;
  IF v_request.status = 'completed' THEN
    -- A repeated webhook gets the original purchase.
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t WHERE t.id = v_request.purchase_transaction_id;
    RETURN v_entry;
  ELSIF v_request.status = 'failed' THEN
    RAISE EXCEPTION 'recharge request % already failed', p_request_id USING ERRCODE = 'KE007';
  END IF;
  -- A random id: nothing another party knows (the request id was once broadcast) names the
  -- purchase in advance; the request's status makes a repeated call return this entry.
  PERFORM keen.check_text(p_stripe_payment_intent_id, 'payment intent id', 255);
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, transaction_type, amount, description, idempotency_key,
          stripe_payment_intent_id, metadata)
  VALUES (pg_catalog.gen_random_uuid(), v_request.user_id, v_request.account_id,
          'purchase', v_request.amount, 'auto-recharge', 'recharge:' || v_request.id::text,
          p_stripe_payment_intent_id, pg_catalog.jsonb_build_object('recharge_request_id', v_request.id))
  RETURNING t.* INTO v_entry;
  UPDATE keen.recharge_requests AS r
     SET status = 'completed', resolved_at = pg_catalog.now(), purchase_transaction_id = v_entry.id
   WHERE r.id = p_request_id;
  RETURN v_entry;
END
$$;

CREATE OR REPLACE FUNCTION keen.usage_report(p_from date, p_to date)
RETURNS TABLE (
  date_bucket date, sessions_started integer, sessions_completed integer,
  sessions_failed integer, sessions_cancelled integer, tokens_used bigint, tool_calls bigint,
  total_cost numeric, credits_purchased numeric, credits_spent numeric,
  credits_refunded numeric, credits_adjusted numeric)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
BEGIN
  v_user_id := keen.require_user_id();
  IF p_from IS NULL OR p_to IS NULL OR NOT pg_catalog.isfinite(p_from) OR NOT pg_catalog.isfinite(p_to)
     OR p_from > p_to OR p_to - p_from > 365 THEN
    RAISE EXCEPTION 'invalid report range: % to %', p_from, p_to
      USING ERRCODE = 'KE013',
            DETAIL = 'Both days are required and finite, p_from <= p_to, at most 366 days inclusive.',
            HINT = 'Ask for a year or less at a time.';
  END IF;
  -- Every day of the range, zeros where the user had no activity; the explicit user_id
  -- filter and RLS both keep it to the caller's rows.
  RETURN QUERY
  SELECT p_from + g.i,
         coalesce(s.sessions_started, 0), coalesce(s.sessions_completed, 0),
         coalesce(s.sessions_failed, 0), coalesce(s.sessions_cancelled, 0),
         coalesce(s.tokens_used, 0::bigint), coalesce(s.tool_calls, 0::bigint),
         coalesce(s.total_cost, 0)::numeric, coalesce(s.credits_purchased, 0)::numeric,
         coalesce(s.credits_spent, 0)::numeric, coalesce(s.credits_refunded, 0)::numeric,
         coalesce(s.credits_adjusted, 0)::numeric
  FROM pg_catalog.generate_series(0, p_to - p_from) AS g(i)
  LEFT JOIN keen.daily_usage_stats AS s
    ON s.user_id = v_user_id AND s.date_bucket = p_from + g.i
  ORDER BY g.i;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_agent_sessions__track_usage()
RETURNS trigger
LANGUAGE plpgsql
-- Deferred to COMMIT, where it runs as the committing role (keen_app, outside the SECURITY
-- DEFINER function that changed the session): it writes the stats as their owner instead,
-- for the changed row's own user_id.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_deltas keen.usage_delta[];
  v_timezone text;
BEGIN
  SELECT u.timezone INTO v_timezone FROM keen.users AS u
  WHERE u.id = CASE TG_OP WHEN 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
  IF NOT FOUND THEN
    -- A session deleted with its user (ON DELETE CASCADE): the stats went with the user.
    IF TG_OP = 'DELETE' THEN
      RETURN NULL;
    END IF;
    -- Otherwise as keen.credit_local_date reads it: UTC when the row is not visible.
    v_timezone := 'UTC';
  END IF;
  -- A changed session: take back what the old row counted, add what the new one counts.
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    v_deltas := keen.session_usage(OLD, v_timezone, -1);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    v_deltas := v_deltas || keen.session_usage(NEW, v_timezone);
  END IF;
  PERFORM keen.add_usage_deltas(v_deltas);
  RETURN NULL;
END
$$;

-- ===== row-level security ====================================================
-- keen_app writes nothing directly: its write policies go with its write privileges.
DROP POLICY update_own ON keen.users;
DROP POLICY insert_own ON keen.auth_tokens;
DROP POLICY update_own ON keen.auth_tokens;
DROP POLICY insert_own ON keen.agent_sessions;
DROP POLICY update_own ON keen.agent_sessions;
DROP POLICY insert_own ON keen.session_events;
DROP POLICY insert_own ON keen.websocket_connections;
DROP POLICY update_own ON keen.websocket_connections;
DROP POLICY update_own ON keen.credit_accounts;
DROP POLICY insert_own ON keen.credit_transactions;
DROP POLICY insert_own ON keen.credit_holds;
DROP POLICY update_own ON keen.credit_holds;
DROP POLICY insert_own ON keen.recharge_requests;
DROP POLICY insert_own ON keen.daily_usage_stats;
DROP POLICY update_own ON keen.daily_usage_stats;

-- ===== grants ================================================================
REVOKE UPDATE (last_login_at, last_login_ip) ON keen.users FROM keen_app;
REVOKE INSERT, UPDATE ON keen.auth_tokens FROM keen_app;
REVOKE INSERT, UPDATE ON keen.agent_sessions, keen.websocket_connections FROM keen_app;
REVOKE INSERT ON keen.session_events FROM keen_app;
REVOKE USAGE ON SEQUENCE keen.session_events_id_seq FROM keen_app;
REVOKE UPDATE ON keen.credit_accounts FROM keen_app;
REVOKE INSERT ON keen.credit_transactions, keen.recharge_requests FROM keen_app;
REVOKE INSERT, UPDATE ON keen.credit_holds, keen.daily_usage_stats FROM keen_app;
GRANT EXECUTE ON FUNCTION keen.text_prefix(text), keen.check_text(text, text, integer, boolean) TO keen_app;
REVOKE EXECUTE ON FUNCTION
  keen.session_phase_rank(text),
  keen.lock_event_stream(uuid),
  keen.lock_session(text),
  keen.lock_connection(text),
  keen.append_session_event(keen.agent_sessions, text, jsonb),
  keen.check_session_cost(numeric, text),
  keen.lock_credit_account(uuid),
  keen.credit_fingerprint(text, jsonb),
  keen.idempotent_id(uuid, text, text),
  keen.check_idempotency_key(text),
  keen.find_idempotent_entry(uuid, text, text),
  keen.require_agent_session(uuid),
  keen.check_spending_limits(keen.credit_accounts, numeric),
  keen.session_usage(keen.agent_sessions, text, integer),
  keen.ledger_usage(keen.credit_transactions, text),
  keen.add_usage_deltas(keen.usage_delta[])
FROM keen_app;

-- ===== comments ==============================================================
COMMENT ON FUNCTION keen.current_user_id() IS
  'The tenant of the current transaction (app.current_user_id), or NULL when unset, empty or not a canonical uuid.';
COMMENT ON FUNCTION keen.text_prefix(text) IS
  'A caller''s text as quoted in an error message: at most its first 24 characters.';
COMMENT ON FUNCTION keen.check_text(text, text, integer, boolean) IS
  'Raises KE013 when the text is longer than p_max characters or empty (or NULL when required).';
COMMENT ON FUNCTION keen.check_text_array(text[], text, integer, integer) IS
  'Raises KE013 when the array has more than p_max_items elements or an element fails keen.check_text.';
COMMENT ON FUNCTION keen.check_jsonb(jsonb, text, integer) IS
  'Raises KE013 when the JSON value takes more than p_max_bytes bytes.';
COMMENT ON FUNCTION keen.tg_session_events__notify() IS 'Trigger: NOTIFY keen_events, an empty wake-up (names no tenant).';
COMMENT ON COLUMN keen.credit_transactions.stripe_payment_intent_id IS 'The payment that bought these credits; unique per tenant, so one payment credits once.';

RESET ROLE;
