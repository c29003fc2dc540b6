-- Readers as definers (issue 19): on Citus a transaction reaches a shard through one
-- connection per user, and a shard that one user (keen_owner, inside a SECURITY DEFINER
-- writer) modified cannot be read by another (keen_app) in the same transaction: "cannot
-- perform query on placements that were modified in this transaction by a different user".
-- So the tenant's readers run as keen_owner too. Each takes the tenant from
-- keen.require_user_id() and names it by value in every statement (the catalog test holds
-- them to it), so it returns exactly the rows the policy would. The audit trail's reader
-- keeps the caller's rights for its operator branch (every user's trail, which RLS shows
-- keen_owner only) and reads the tenant's own page through a definer helper.
-- close_account empties its sessions' connection lists: the connections go, and since 0017
-- no trigger keeps those lists.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

ALTER FUNCTION keen.get_session(text) SECURITY DEFINER;
ALTER FUNCTION keen.get_session_by_id(uuid) SECURITY DEFINER;
ALTER FUNCTION keen.session_tree(text) SECURITY DEFINER;
ALTER FUNCTION keen.list_sessions(text, timestamptz, uuid, integer) SECURITY DEFINER;
ALTER FUNCTION keen.list_session_events(bigint, text, integer) SECURITY DEFINER;
ALTER FUNCTION keen.session_events_waiting(text) SECURITY DEFINER;
ALTER FUNCTION keen.check_credits(numeric) SECURITY DEFINER;
ALTER FUNCTION keen.credit_balance() SECURITY DEFINER;
ALTER FUNCTION keen.usage_report(date, date) SECURITY DEFINER;
ALTER FUNCTION keen.session_cost_breakdown(text) SECURITY DEFINER;
ALTER FUNCTION keen.current_user_profile() SECURITY DEFINER;
ALTER FUNCTION keen.list_auth_tokens() SECURITY DEFINER;
ALTER FUNCTION keen.list_credit_transactions(integer) SECURITY DEFINER;

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

CREATE OR REPLACE FUNCTION keen.list_user_audit_log(p_before_id bigint, p_max_rows integer)
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

GRANT EXECUTE ON FUNCTION keen.own_user_audit_log(bigint, integer) TO keen_app;

COMMENT ON FUNCTION keen.own_user_audit_log(bigint, integer) IS 'The tenant''s own page of the account trail before an id, newest first, at most 1,000 rows (list_user_audit_log''s tenant branch, as keen_owner). KE010 without tenant.';
