-- Roll back 0019_definer_readers: the tenant readers with the caller's rights again, the audit
-- trail's reader in one piece, close_account leaving the session lists alone.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

ALTER FUNCTION keen.get_session(text) SECURITY INVOKER;
ALTER FUNCTION keen.get_session_by_id(uuid) SECURITY INVOKER;
ALTER FUNCTION keen.session_tree(text) SECURITY INVOKER;
ALTER FUNCTION keen.list_sessions(text, timestamptz, uuid, integer) SECURITY INVOKER;
ALTER FUNCTION keen.list_session_events(bigint, text, integer) SECURITY INVOKER;
ALTER FUNCTION keen.session_events_waiting(text) SECURITY INVOKER;
ALTER FUNCTION keen.check_credits(numeric) SECURITY INVOKER;
ALTER FUNCTION keen.credit_balance() SECURITY INVOKER;
ALTER FUNCTION keen.usage_report(date, date) SECURITY INVOKER;
ALTER FUNCTION keen.session_cost_breakdown(text) SECURITY INVOKER;
ALTER FUNCTION keen.current_user_profile() SECURITY INVOKER;
ALTER FUNCTION keen.list_auth_tokens() SECURITY INVOKER;
ALTER FUNCTION keen.list_credit_transactions(integer) SECURITY INVOKER;

CREATE OR REPLACE FUNCTION keen.list_user_audit_log(p_before_id bigint, p_max_rows integer)
RETURNS SETOF keen.user_audit_log
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.current_user_id();
  v_before bigint := coalesce(p_before_id, 9223372036854775807);
  v_rows integer := least(greatest(coalesce(p_max_rows, 0), 0), 1000);
BEGIN
  IF v_user_id IS NOT NULL THEN
    RETURN QUERY
      SELECT l.* FROM keen.user_audit_log AS l
       WHERE l.user_id = v_user_id AND l.id < v_before
       ORDER BY l.id DESC
       LIMIT v_rows;
    RETURN;
  END IF;
  -- Without a tenant only an operator (keen_owner) sees rows; the service sees none (RLS).
  RETURN QUERY
    -- all tenants: an operator's page of every user's trail (read-only, bounded to 1,000 rows)
    SELECT l.* FROM keen.user_audit_log AS l
     WHERE l.id < v_before
     ORDER BY l.id DESC
     LIMIT v_rows;
END
$$;

DROP FUNCTION keen.own_user_audit_log(bigint, integer);

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
