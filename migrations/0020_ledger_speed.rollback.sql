-- Roll back 0020_ledger_speed: the B-tree indexes of the listing and the dashboard window,
-- daily_usage_stats at the default fillfactor, deduct_credits, hold_credits and
-- list_credit_transactions of before.
SET ROLE keen_owner;

DROP INDEX keen.credit_transactions_created_at_idx;
CREATE INDEX credit_transactions_created_at_idx ON keen.credit_transactions (created_at);
CREATE INDEX credit_transactions_user_id_created_at_idx
  ON keen.credit_transactions (user_id, created_at DESC, entry_no DESC);
ALTER TABLE keen.daily_usage_stats RESET (fillfactor);

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
  v_now timestamptz := pg_catalog.now();
  v_amount numeric;
  v_fingerprint text;
  v_account record;  -- the account row and the user's time zone
  v_today date;
  v_month date;
  v_spent_day numeric;
  v_spent_month numeric;
  v_entry keen.credit_transactions;
BEGIN
  -- 1. Validate, before the lock (all of one account's deductions queue on it).
  IF p_amount IS NULL OR NOT (p_amount > 0 AND p_amount < 100000000) OR p_amount <> pg_catalog.round(p_amount, 4) THEN
    PERFORM keen.validate_credit_amount(p_amount);  -- raises KE004 (NaN and ±Infinity fail the range)
  END IF;
  v_amount := pg_catalog.round(p_amount, 4);
  IF pg_catalog.length(p_description) NOT BETWEEN 1 AND 1000 THEN
    PERFORM keen.check_text(p_description, 'description', 1000);
  END IF;
  IF pg_catalog.length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM keen.check_text(p_idempotency_key, 'idempotency key', 255);
  END IF;
  IF p_session_id IS NOT NULL
     AND NOT EXISTS (SELECT FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id AND s.id = p_session_id) THEN
    RAISE EXCEPTION 'agent session % not found', p_session_id USING ERRCODE = 'KE006';
  END IF;
  v_fingerprint := pg_catalog.md5('deduct:' || pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'session_id', p_session_id, 'description', p_description)::text);
  -- 2. Lock the account, with the user's time zone (one statement, once per movement).
  SELECT a.*, u.timezone INTO v_account
    FROM keen.credit_accounts AS a LEFT JOIN keen.users AS u ON u.id = v_user_id
   WHERE a.user_id = v_user_id
     FOR UPDATE OF a;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
  -- 3. A retried key returns its entry (looked up under the lock: a concurrent retry waits).
  IF p_idempotency_key IS NOT NULL THEN
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = v_user_id AND t.account_id = v_account.id AND t.idempotency_key = p_idempotency_key;
    IF FOUND THEN
      IF v_entry.request_fingerprint IS DISTINCT FROM v_fingerprint THEN
        RAISE EXCEPTION 'idempotency key % was used with different arguments', keen.text_prefix(p_idempotency_key)
          USING ERRCODE = 'KE005',
                DETAIL = pg_catalog.format('original entry %s (%s %s)', v_entry.id, v_entry.transaction_type, v_entry.amount),
                HINT = 'Use a new key for a new operation.';
      END IF;
      RETURN v_entry;
    END IF;
  END IF;
  -- 4. State, holds, balance, limits.
  IF v_account.account_status <> 'active' THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status
      USING ERRCODE = 'KE012', DETAIL = coalesce(v_account.suspended_reason, '');
  END IF;
  IF v_account.next_hold_expiry <= v_now THEN
    SELECT e.p_held_amount INTO v_account.held_amount FROM keen.expire_lapsed_holds(v_user_id) AS e;
  END IF;
  IF v_account.current_balance - v_amount < v_account.held_amount THEN
    RAISE EXCEPTION 'insufficient credits: required %, available %', v_amount, v_account.current_balance - v_account.held_amount
      USING ERRCODE = 'KE001',
            DETAIL = pg_catalog.format('balance %s, held %s', v_account.current_balance, v_account.held_amount),
            HINT = 'Add credits or release holds.';
  END IF;
  v_today := (v_now AT TIME ZONE coalesce(v_account.timezone, 'UTC'))::date;
  v_month := pg_catalog.date_trunc('month', v_today)::date;
  -- Spent so far on the local day and in the local month (a counter of an earlier one is 0).
  v_spent_day := CASE WHEN v_account.spent_today_date = v_today THEN v_account.spent_today ELSE 0 END;
  v_spent_month := CASE WHEN v_account.spent_month_start = v_month THEN v_account.spent_this_month ELSE 0 END;
  -- Active holds are spending to come: they count against the limits too.
  IF v_spent_day + v_account.held_amount + v_amount > v_account.daily_limit
     OR v_spent_month + v_account.held_amount + v_amount > v_account.monthly_limit THEN
    PERFORM keen.refuse_spending_limit(v_account.daily_limit, v_account.monthly_limit, v_spent_day,
                                       v_spent_month, v_account.held_amount, v_amount, v_today);
  END IF;
  -- 5. The ledger row, with the balance before and after; its id derives from the key.
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after,
          session_id, description, idempotency_key, request_fingerprint, created_at)
  VALUES (CASE WHEN p_idempotency_key IS NULL THEN pg_catalog.gen_random_uuid()
               ELSE pg_catalog.md5(v_account.id::text || ':entry:' || p_idempotency_key)::uuid END,
          v_user_id, v_account.id, v_account.last_entry_no + 1, 'usage', -v_amount,
          v_account.current_balance, v_account.current_balance - v_amount, p_session_id,
          coalesce(p_description, 'usage'), p_idempotency_key, v_fingerprint, v_now)
  RETURNING t.* INTO v_entry;
  -- 6. The account follows its newest entry; the counters count the local day and month (a
  -- counter of a later day, after a time zone change, is left as it is).
  UPDATE keen.credit_accounts AS a
     SET current_balance = v_entry.balance_after, last_entry_no = v_entry.entry_no,
         lifetime_spent = a.lifetime_spent + v_amount,
         spent_today = CASE WHEN a.spent_today_date > v_today THEN a.spent_today ELSE v_spent_day + v_amount END,
         spent_today_date = GREATEST(a.spent_today_date, v_today),
         spent_this_month = CASE WHEN a.spent_month_start > v_month THEN a.spent_this_month
                                 ELSE v_spent_month + v_amount END,
         spent_month_start = GREATEST(a.spent_month_start, v_month),
         updated_at = v_now
   WHERE a.user_id = v_user_id;
  -- 7. The day's statistics, in place (the day's first entry creates the row).
  UPDATE keen.daily_usage_stats AS d
     SET credits_spent = d.credits_spent + v_amount, updated_at = v_now
   WHERE d.user_id = v_user_id AND d.date_bucket = v_today;
  IF NOT FOUND THEN
    PERFORM keen.add_ledger_usage(v_user_id, v_today, 'usage', -v_amount);
  END IF;
  -- 8. Auto-recharge outbox: one open request per account (unique partial index).
  IF v_account.auto_recharge_enabled AND v_entry.balance_after < v_account.auto_recharge_threshold THEN
    PERFORM keen.request_recharge(v_user_id, v_account.id, v_account.auto_recharge_amount, v_entry.id,
                                  v_entry.balance_after);
  END IF;
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
  v_now timestamptz := pg_catalog.now();
  v_amount numeric;
  v_expires_in interval := coalesce(p_expires_in, interval '1 hour');
  v_fingerprint text;
  v_account record;  -- the account row and the user's time zone
  v_today date;
  v_spent_day numeric;
  v_spent_month numeric;
  v_hold keen.credit_holds;
BEGIN
  -- 1. Validate.
  IF p_amount IS NULL OR NOT (p_amount > 0 AND p_amount < 100000000) OR p_amount <> pg_catalog.round(p_amount, 4) THEN
    PERFORM keen.validate_credit_amount(p_amount);
  END IF;
  v_amount := pg_catalog.round(p_amount, 4);
  IF v_expires_in <= interval '0' OR v_expires_in > interval '7 days' THEN
    RAISE EXCEPTION 'invalid hold expiry: % (must be above 0 and at most 7 days)', v_expires_in
      USING ERRCODE = 'KE013';
  END IF;
  IF pg_catalog.length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM keen.check_text(p_idempotency_key, 'idempotency key', 255);
  END IF;
  IF p_session_id IS NOT NULL
     AND NOT EXISTS (SELECT FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id AND s.id = p_session_id) THEN
    RAISE EXCEPTION 'agent session % not found', p_session_id USING ERRCODE = 'KE006';
  END IF;
  v_fingerprint := pg_catalog.md5('hold:' || pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'session_id', p_session_id, 'expires_in', v_expires_in)::text);
  -- 2. Lock the account, with the user's time zone.
  SELECT a.*, u.timezone INTO v_account
    FROM keen.credit_accounts AS a LEFT JOIN keen.users AS u ON u.id = v_user_id
   WHERE a.user_id = v_user_id
     FOR UPDATE OF a;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
  -- 3. A retried key returns its hold.
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
  -- 4. State, holds, available balance, limits (a hold is spending to come).
  IF v_account.account_status <> 'active' THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status
      USING ERRCODE = 'KE012', DETAIL = coalesce(v_account.suspended_reason, '');
  END IF;
  IF v_account.next_hold_expiry <= v_now THEN
    SELECT e.p_held_amount INTO v_account.held_amount FROM keen.expire_lapsed_holds(v_user_id) AS e;
  END IF;
  IF v_amount > v_account.current_balance - v_account.held_amount THEN
    RAISE EXCEPTION 'insufficient credits: required %, available %', v_amount, v_account.current_balance - v_account.held_amount
      USING ERRCODE = 'KE001',
            DETAIL = pg_catalog.format('balance %s, held %s', v_account.current_balance, v_account.held_amount);
  END IF;
  v_today := (v_now AT TIME ZONE coalesce(v_account.timezone, 'UTC'))::date;
  v_spent_day := CASE WHEN v_account.spent_today_date = v_today THEN v_account.spent_today ELSE 0 END;
  v_spent_month := CASE WHEN v_account.spent_month_start = pg_catalog.date_trunc('month', v_today)::date
                        THEN v_account.spent_this_month ELSE 0 END;
  IF v_spent_day + v_account.held_amount + v_amount > v_account.daily_limit
     OR v_spent_month + v_account.held_amount + v_amount > v_account.monthly_limit THEN
    PERFORM keen.refuse_spending_limit(v_account.daily_limit, v_account.monthly_limit, v_spent_day,
                                       v_spent_month, v_account.held_amount, v_amount, v_today);
  END IF;
  -- 5. The hold (its id derives from the key), and the account's held amount.
  INSERT INTO keen.credit_holds AS h
         (id, user_id, account_id, session_id, amount, status, idempotency_key, request_fingerprint,
          expires_at, created_at)
  VALUES (CASE WHEN p_idempotency_key IS NULL THEN pg_catalog.gen_random_uuid()
               ELSE pg_catalog.md5(v_account.id::text || ':hold:' || p_idempotency_key)::uuid END,
          v_user_id, v_account.id, p_session_id, v_amount, 'active', p_idempotency_key, v_fingerprint,
          v_now + v_expires_in, v_now)
  RETURNING h.* INTO v_hold;
  UPDATE keen.credit_accounts AS a
     SET held_amount = a.held_amount + v_amount,
         next_hold_expiry = LEAST(a.next_hold_expiry, v_hold.expires_at),
         updated_at = v_now
   WHERE a.user_id = v_user_id;
  RETURN v_hold;
END
$$;

CREATE OR REPLACE FUNCTION keen.list_credit_transactions(p_limit integer)
RETURNS SETOF keen.credit_transactions
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
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
