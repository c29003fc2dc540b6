-- Tenant reads by value (issue 19): the four queries that read a tenant table directly and
-- left the tenant to the RLS policy (CurrentUser, ListAuthTokens, ListUserAuditLog,
-- ListCreditTransactions) call functions that name user_id by value instead. The policy's
-- keen.current_user_id() is a function call Citus cannot prune by, so those reads went to
-- every shard; a PL/pgSQL variable is a parameter it routes to the tenant's one shard. The
-- functions run with the caller's rights (RLS and column grants still apply).
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

CREATE FUNCTION keen.current_user_profile()
RETURNS TABLE (
  id uuid, email text, username text, display_name text, role text, is_admin boolean,
  email_verified boolean, account_status text, mfa_enabled boolean, timezone text,
  preferences jsonb, subscription_tier text, subscription_status text, created_at timestamptz,
  updated_at timestamptz, last_login_at timestamptz, last_login_ip inet, avatar_url text,
  billing_customer_id text, suspended_reason text)
LANGUAGE plpgsql
STABLE
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

CREATE FUNCTION keen.list_user_audit_log(p_before_id bigint, p_max_rows integer)
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

CREATE FUNCTION keen.list_credit_transactions(p_limit integer)
RETURNS SETOF keen.credit_transactions
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  -- The tenant by value: on Citus one shard, not every shard filtered by the policy.
  RETURN QUERY
    SELECT t.* FROM keen.credit_transactions AS t
     WHERE t.user_id = v_user_id
     ORDER BY t.created_at DESC, t.entry_no DESC
     LIMIT p_limit;
END
$$;

GRANT EXECUTE ON FUNCTION
  keen.current_user_profile(), keen.list_auth_tokens(), keen.list_user_audit_log(bigint, integer)
  TO keen_app;
GRANT EXECUTE ON FUNCTION keen.list_credit_transactions(integer) TO keen_app;

COMMENT ON FUNCTION keen.current_user_profile() IS 'The caller''s own user row without secrets (the columns the service may read), by its key: one shard on Citus. KE010 without tenant.';
COMMENT ON FUNCTION keen.list_auth_tokens() IS 'The caller''s tokens, newest first, by the tenant key: one shard on Citus. KE010 without tenant.';
COMMENT ON FUNCTION keen.list_user_audit_log(bigint, integer) IS 'A page of the account trail before an id, newest first, at most 1,000 rows (a negative count reads none): the tenant''s own by the tenant key (one shard on Citus), or, without tenant, every user''s for an operator (keen_owner).';
COMMENT ON FUNCTION keen.list_credit_transactions(integer) IS 'The caller''s ledger, newest first, at most p_limit rows, by the tenant key: one shard on Citus. KE010 without tenant.';
