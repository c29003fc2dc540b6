-- Ledger entries (issue 16): each money movement (deduct, add, hold, capture, release, and
-- the internal extend_hold) is one SECURITY DEFINER function that reads top to bottom: it
-- validates, locks the account once with the user's time zone, answers a retried key, checks
-- state, holds, balance and limits, writes the ledger row with the balance before and after,
-- updates the account and the day's statistics in place, and returns. The triggers that did
-- this work in pieces go (the ledger's post/apply, the account and hold guards, the holds'
-- reserve/apply, the ledger's stats trigger, credit_accounts' updated_at stamp), with the
-- helpers only they called: keen_app reads the credit tables and writes none of them, so the
-- movements (and migrations) are the only writers. capture_hold becomes idempotent (a retry
-- with the same amount and description returns the original entry; other arguments KE005).
-- credit_accounts.next_hold_expiry lets a movement skip the lapsed-hold scan until a hold
-- can have lapsed. bench/credits/REPORT.md measures it.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

-- ===== triggers and the helpers only they called ==============================
-- Trigger functions and internal helpers, none of them part of the API (docs/credits.md):
-- squawk-ignore-file ban-drop-function
DROP TRIGGER _050_guard ON keen.credit_accounts;
DROP TRIGGER _100_set_updated_at ON keen.credit_accounts;
DROP TRIGGER _100_post ON keen.credit_transactions;
DROP TRIGGER _100_apply ON keen.credit_transactions;
DROP TRIGGER _500_track_usage_stats ON keen.credit_transactions;
DROP TRIGGER _100_reserve ON keen.credit_holds;
DROP TRIGGER _100_guard ON keen.credit_holds;
DROP TRIGGER _200_apply_insert ON keen.credit_holds;
DROP TRIGGER _200_apply_update ON keen.credit_holds;
DROP FUNCTION keen.tg_credit_accounts__guard();
DROP FUNCTION keen.tg_credit_transactions__post();
DROP FUNCTION keen.tg_credit_transactions__apply();
DROP FUNCTION keen.tg_credit_transactions__track_usage();
DROP FUNCTION keen.tg_credit_holds__reserve();
DROP FUNCTION keen.tg_credit_holds__guard();
DROP FUNCTION keen.tg_credit_holds__apply();
DROP FUNCTION keen.lock_credit_account(uuid);
DROP FUNCTION keen.find_idempotent_entry(uuid, text, text);
DROP FUNCTION keen.check_spending_limits(keen.credit_accounts, numeric);
DROP FUNCTION keen.require_agent_session(uuid);
DROP FUNCTION keen.credit_fingerprint(text, jsonb);
DROP FUNCTION keen.idempotent_id(uuid, text, text);
DROP FUNCTION keen.check_idempotency_key(text);

-- ===== tables ================================================================
ALTER TABLE keen.credit_accounts ADD COLUMN next_hold_expiry timestamptz;
-- Lapsed holds included: the account's next movement expires them.
UPDATE keen.credit_accounts AS a
   SET next_hold_expiry = (SELECT min(h.expires_at) FROM keen.credit_holds AS h
                            WHERE h.user_id = a.user_id AND h.status = 'active')
 WHERE a.held_amount > 0;

-- ===== functions =============================================================
-- Money movements -------------------------------------------------------------------------
-- Each movement (deduct, add, hold, capture, release, extend) is one SECURITY DEFINER
-- function that reads top to bottom like a ledger entry: validate the arguments, lock the
-- account once (FOR UPDATE, by user_id) reading what the movement needs with the user's time
-- zone, answer a retried idempotency key, check state, balance, holds and limits, write the
-- ledger row with the balance before and after, update the account and the day's statistics
-- in place, return. keen_app may not write any credit table (it reads them through RLS), so
-- these functions (and migrations) are the only writers: no trigger re-checks their work.
-- Every statement names user_id by value (the owner's RLS policy is USING (true): the
-- predicate is the isolation, and what Citus routes by).

CREATE FUNCTION keen.refuse_spending_limit(
  p_daily_limit numeric, p_monthly_limit numeric, p_spent_day numeric, p_spent_month numeric,
  p_held numeric, p_amount numeric, p_today date)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Called only once spent + held + amount is known to exceed a limit: names which, and why.
  IF p_spent_day + p_held + p_amount > p_daily_limit THEN
    RAISE EXCEPTION 'daily spending limit exceeded: limit %, would reach %', p_daily_limit,
        p_spent_day + p_held + p_amount
      USING ERRCODE = 'KE002',
            DETAIL = pg_catalog.format('local day %s, held %s, requested %s', p_today, p_held, p_amount);
  END IF;
  RAISE EXCEPTION 'monthly spending limit exceeded: limit %, would reach %', p_monthly_limit,
      p_spent_month + p_held + p_amount
    USING ERRCODE = 'KE003',
          DETAIL = pg_catalog.format('local month from %s, held %s, requested %s',
                                     pg_catalog.date_trunc('month', p_today)::date, p_held, p_amount);
END
$$;

CREATE FUNCTION keen.expire_lapsed_holds(p_user_id uuid, OUT p_held_amount numeric, OUT p_expired integer)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- The caller holds the account lock. Holds past their expiry stop reserving credits now,
  -- not only when the sweeper runs; next_hold_expiry moves to the earliest one left.
  WITH expired AS (
    UPDATE keen.credit_holds AS h SET status = 'expired', resolved_at = pg_catalog.now()
     WHERE h.user_id = p_user_id AND h.status = 'active' AND h.expires_at <= pg_catalog.now()
    RETURNING h.amount
  )
  UPDATE keen.credit_accounts AS a
     SET held_amount = a.held_amount - (SELECT coalesce(sum(e.amount), 0) FROM expired AS e),
         next_hold_expiry = (SELECT min(h.expires_at) FROM keen.credit_holds AS h
                              WHERE h.user_id = p_user_id AND h.status = 'active'
                                AND h.expires_at > pg_catalog.now()),
         updated_at = pg_catalog.now()
   WHERE a.user_id = p_user_id
  RETURNING a.held_amount, (SELECT count(*) FROM expired)::integer INTO p_held_amount, p_expired;
END
$$;

CREATE FUNCTION keen.add_ledger_usage(p_user_id uuid, p_day date, p_type text, p_amount numeric)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- The attribution rule of keen.ledger_usage: one ledger row is one figure of one day.
  v_purchased numeric := CASE p_type WHEN 'purchase' THEN p_amount ELSE 0 END;
  v_spent numeric := CASE p_type WHEN 'usage' THEN -p_amount ELSE 0 END;
  v_refunded numeric := CASE p_type WHEN 'refund' THEN p_amount ELSE 0 END;
  v_adjusted numeric := CASE p_type WHEN 'adjustment' THEN p_amount ELSE 0 END;
BEGIN
  -- The caller holds the account lock (taken before this row's by every transaction). The
  -- day's row usually exists: add to it; else create it (every figure added is >= 0 but the
  -- signed adjustment, which no CHECK bounds, so INSERT … ON CONFLICT is safe here).
  UPDATE keen.daily_usage_stats AS d
     SET credits_purchased = d.credits_purchased + v_purchased, credits_spent = d.credits_spent + v_spent,
         credits_refunded = d.credits_refunded + v_refunded, credits_adjusted = d.credits_adjusted + v_adjusted,
         updated_at = pg_catalog.now()
   WHERE d.user_id = p_user_id AND d.date_bucket = p_day;
  IF NOT FOUND THEN
    INSERT INTO keen.daily_usage_stats AS d
           (user_id, date_bucket, credits_purchased, credits_spent, credits_refunded, credits_adjusted)
    VALUES (p_user_id, p_day, v_purchased, v_spent, v_refunded, v_adjusted)
    ON CONFLICT (user_id, date_bucket) DO UPDATE
       SET credits_purchased = d.credits_purchased + v_purchased, credits_spent = d.credits_spent + v_spent,
           credits_refunded = d.credits_refunded + v_refunded, credits_adjusted = d.credits_adjusted + v_adjusted,
           updated_at = pg_catalog.now()
     WHERE d.user_id = p_user_id;
  END IF;
END
$$;

CREATE FUNCTION keen.request_recharge(
  p_user_id uuid, p_account_id uuid, p_amount numeric, p_entry_id uuid, p_balance numeric)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_request_id uuid;
BEGIN
  -- At most one open request per account (unique partial index): a second one is skipped.
  INSERT INTO keen.recharge_requests AS r
         (id, user_id, account_id, amount, triggered_by_transaction_id, balance_at_request)
  VALUES (pg_catalog.gen_random_uuid(), p_user_id, p_account_id, p_amount, p_entry_id, p_balance)
  ON CONFLICT (account_id) WHERE status IN ('pending', 'processing') DO NOTHING
  RETURNING r.id INTO v_request_id;
  IF v_request_id IS NOT NULL THEN
    -- A wake-up for the billing service, naming nobody: it claims its work by query.
    PERFORM pg_catalog.pg_notify('keen_recharge', '');
  END IF;
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

CREATE FUNCTION keen.post_credit(
  p_user_id uuid,
  p_amount numeric,
  p_transaction_type text,
  p_description text,
  p_idempotency_key text,
  p_stripe_payment_intent_id text,
  p_metadata jsonb)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now timestamptz := pg_catalog.now();
  v_amount numeric;
  -- NULL means the default, as for every optional argument.
  v_type text := coalesce(p_transaction_type, 'purchase');
  v_fingerprint text;
  v_account record;  -- the account row and the user's time zone
  v_entry keen.credit_transactions;
BEGIN
  -- 1. Validate.
  IF p_amount IS NULL OR NOT (p_amount > 0 AND p_amount < 100000000) OR p_amount <> pg_catalog.round(p_amount, 4) THEN
    PERFORM keen.validate_credit_amount(p_amount);
  END IF;
  v_amount := pg_catalog.round(p_amount, 4);
  IF v_type NOT IN ('purchase', 'refund', 'adjustment') THEN
    RAISE EXCEPTION 'invalid transaction type for add_credits: %', keen.text_prefix(v_type)
      USING ERRCODE = 'KE013', HINT = 'One of purchase, refund, adjustment.';
  END IF;
  IF pg_catalog.length(p_description) NOT BETWEEN 1 AND 1000 THEN
    PERFORM keen.check_text(p_description, 'description', 1000);
  END IF;
  IF pg_catalog.length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM keen.check_text(p_idempotency_key, 'idempotency key', 255);
  END IF;
  IF pg_catalog.length(p_stripe_payment_intent_id) NOT BETWEEN 1 AND 255 THEN
    PERFORM keen.check_text(p_stripe_payment_intent_id, 'payment intent id', 255);
  END IF;
  IF pg_catalog.pg_column_size(p_metadata) > 16384 THEN
    PERFORM keen.check_jsonb(p_metadata, 'metadata', 16384);
  END IF;
  v_fingerprint := pg_catalog.md5('add:' || pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'transaction_type', v_type,
    'description', p_description, 'stripe_payment_intent_id', p_stripe_payment_intent_id,
    'metadata', p_metadata)::text);
  -- 2. Lock the account, with the user's time zone.
  SELECT a.*, u.timezone INTO v_account
    FROM keen.credit_accounts AS a LEFT JOIN keen.users AS u ON u.id = p_user_id
   WHERE a.user_id = p_user_id
     FOR UPDATE OF a;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', p_user_id USING ERRCODE = 'KE006';
  END IF;
  -- 3. A retried key returns its entry.
  IF p_idempotency_key IS NOT NULL THEN
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = p_user_id AND t.account_id = v_account.id AND t.idempotency_key = p_idempotency_key;
    IF FOUND AND v_entry.request_fingerprint IS DISTINCT FROM v_fingerprint THEN
      RAISE EXCEPTION 'idempotency key % was used with different arguments', keen.text_prefix(p_idempotency_key)
        USING ERRCODE = 'KE005',
              DETAIL = pg_catalog.format('original entry %s (%s %s)', v_entry.id, v_entry.transaction_type, v_entry.amount),
              HINT = 'Use a new key for a new operation.';
    END IF;
  END IF;
  -- A payment intent is credited once per tenant: a retry with the same arguments (and key)
  -- gets the original entry, anything else KE005 (never a raw unique violation).
  IF v_entry.id IS NULL AND p_stripe_payment_intent_id IS NOT NULL THEN
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = p_user_id AND t.stripe_payment_intent_id = p_stripe_payment_intent_id;
    IF FOUND AND (v_entry.request_fingerprint IS DISTINCT FROM v_fingerprint
                  OR v_entry.idempotency_key IS DISTINCT FROM p_idempotency_key) THEN
      RAISE EXCEPTION 'payment intent % was credited with different arguments', keen.text_prefix(p_stripe_payment_intent_id)
        USING ERRCODE = 'KE005', HINT = 'A payment intent credits once: retry with the same arguments and key.';
    END IF;
  END IF;
  IF v_entry.id IS NOT NULL THEN
    RETURN v_entry;
  END IF;
  -- 4. State: a suspended account may still receive credits, a closed one nothing.
  IF v_account.account_status = 'closed' THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status
      USING ERRCODE = 'KE012', DETAIL = coalesce(v_account.suspended_reason, '');
  END IF;
  -- The balance column holds less than 10^8 (and the lifetime totals less than 10^10).
  IF v_account.current_balance + v_amount >= 100000000
     OR (v_type = 'purchase' AND v_account.lifetime_purchased + v_amount >= 10000000000) THEN
    RAISE EXCEPTION 'invalid amount: % would take the balance % past its ceiling 99999999.9999', v_amount,
        v_account.current_balance
      USING ERRCODE = 'KE004';
  END IF;
  -- 5. The ledger row.
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after,
          description, metadata, idempotency_key, request_fingerprint, stripe_payment_intent_id, created_at)
  VALUES (CASE WHEN p_idempotency_key IS NULL THEN pg_catalog.gen_random_uuid()
               ELSE pg_catalog.md5(v_account.id::text || ':entry:' || p_idempotency_key)::uuid END,
          p_user_id, v_account.id, v_account.last_entry_no + 1, v_type, v_amount,
          v_account.current_balance, v_account.current_balance + v_amount, coalesce(p_description, v_type),
          coalesce(p_metadata, '{}'::jsonb), p_idempotency_key, v_fingerprint, p_stripe_payment_intent_id, v_now)
  RETURNING t.* INTO v_entry;
  -- 6. The account follows it.
  UPDATE keen.credit_accounts AS a
     SET current_balance = v_entry.balance_after, last_entry_no = v_entry.entry_no,
         lifetime_purchased = a.lifetime_purchased + CASE v_type WHEN 'purchase' THEN v_amount ELSE 0 END,
         updated_at = v_now
   WHERE a.user_id = p_user_id;
  -- 7. The day's statistics.
  PERFORM keen.add_ledger_usage(p_user_id, (v_now AT TIME ZONE coalesce(v_account.timezone, 'UTC'))::date, v_type, v_amount);
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
BEGIN
  -- The caller's own account; keen.post_credit is the movement (shared with the billing
  -- service's completed recharges).
  RETURN keen.post_credit(keen.require_user_id(), p_amount, p_transaction_type, p_description,
                          p_idempotency_key, p_stripe_payment_intent_id, p_metadata);
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

CREATE FUNCTION keen.extend_hold(p_user_id uuid, p_hold_id uuid, p_amount numeric)
RETURNS keen.credit_holds
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now timestamptz := pg_catalog.now();
  v_amount numeric;
  v_account record;  -- the account row and the user's time zone
  v_today date;
  v_spent_day numeric;
  v_spent_month numeric;
  v_hold keen.credit_holds;
BEGIN
  -- Internal (other definer functions call it for a running session): adds p_amount to an
  -- active hold under the checks of hold_credits; a refusal raises and writes nothing.
  IF p_amount IS NULL OR NOT (p_amount > 0 AND p_amount < 100000000) OR p_amount <> pg_catalog.round(p_amount, 4) THEN
    PERFORM keen.validate_credit_amount(p_amount);
  END IF;
  v_amount := pg_catalog.round(p_amount, 4);
  SELECT a.*, u.timezone INTO v_account
    FROM keen.credit_accounts AS a LEFT JOIN keen.users AS u ON u.id = p_user_id
   WHERE a.user_id = p_user_id
     FOR UPDATE OF a;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', p_user_id USING ERRCODE = 'KE006';
  END IF;
  SELECT h.* INTO v_hold FROM keen.credit_holds AS h
   WHERE h.user_id = p_user_id AND h.id = p_hold_id
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'KE006';
  END IF;
  IF v_hold.status <> 'active' OR v_hold.expires_at <= v_now THEN
    RAISE EXCEPTION 'hold % cannot be extended: it is %', v_hold.id,
      CASE WHEN v_hold.status = 'active' THEN 'expired' ELSE v_hold.status END
      USING ERRCODE = 'KE007';
  END IF;
  IF v_account.account_status <> 'active' THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status
      USING ERRCODE = 'KE012', DETAIL = coalesce(v_account.suspended_reason, '');
  END IF;
  IF v_account.next_hold_expiry <= v_now THEN
    SELECT e.p_held_amount INTO v_account.held_amount FROM keen.expire_lapsed_holds(p_user_id) AS e;
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
  UPDATE keen.credit_holds AS h SET amount = h.amount + v_amount
   WHERE h.user_id = p_user_id AND h.id = p_hold_id
  RETURNING h.* INTO v_hold;
  UPDATE keen.credit_accounts AS a
     SET held_amount = a.held_amount + v_amount, updated_at = v_now
   WHERE a.user_id = p_user_id;
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
  v_now timestamptz := pg_catalog.now();
  v_account record;  -- the account row and the user's time zone
  v_hold keen.credit_holds;
  v_amount numeric;
  v_today date;
  v_month date;
  v_entry keen.credit_transactions;
BEGIN
  -- 1. Validate.
  IF p_amount IS NOT NULL AND (NOT (p_amount > 0 AND p_amount < 100000000) OR p_amount <> pg_catalog.round(p_amount, 4)) THEN
    PERFORM keen.validate_credit_amount(p_amount);
  END IF;
  IF pg_catalog.length(p_description) NOT BETWEEN 1 AND 1000 THEN
    PERFORM keen.check_text(p_description, 'description', 1000);
  END IF;
  -- 2. Lock the account (with the user's time zone), then the hold.
  SELECT a.*, u.timezone INTO v_account
    FROM keen.credit_accounts AS a LEFT JOIN keen.users AS u ON u.id = v_user_id
   WHERE a.user_id = v_user_id
     FOR UPDATE OF a;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
  SELECT h.* INTO v_hold FROM keen.credit_holds AS h
   WHERE h.user_id = v_user_id AND h.id = p_hold_id
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'KE006';
  END IF;
  v_amount := coalesce(pg_catalog.round(p_amount, 4), v_hold.amount);
  -- 3. A retried capture (same amount and description) returns its entry: the hold names it.
  IF v_hold.status = 'captured' THEN
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = v_user_id AND t.id = v_hold.capture_transaction_id;
    IF v_entry.amount <> -v_amount OR v_entry.description <> coalesce(p_description, 'hold capture') THEN
      RAISE EXCEPTION 'hold % was captured with different arguments', v_hold.id
        USING ERRCODE = 'KE005',
              DETAIL = pg_catalog.format('original entry %s (%s %s)', v_entry.id, v_entry.transaction_type, v_entry.amount),
              HINT = 'A hold is captured once.';
    END IF;
    RETURN v_entry;
  END IF;
  -- 4. State and amount; neither balance nor limits: the hold reserved both.
  IF v_hold.status <> 'active' OR v_hold.expires_at <= v_now THEN
    RAISE EXCEPTION 'hold % cannot be captured: it is %', v_hold.id,
      CASE WHEN v_hold.status = 'active' THEN 'expired' ELSE v_hold.status END
      USING ERRCODE = 'KE007', HINT = 'Charge with keen.deduct_credits() instead.';
  END IF;
  -- A running session's hold backs the cost it has accepted: only the session's completion
  -- (or cancel) settles it, so its agents never accept a cost that is then not paid.
  IF v_hold.session_id IS NOT NULL AND EXISTS (
       SELECT FROM keen.agent_sessions AS s
        WHERE s.user_id = v_user_id AND s.id = v_hold.session_id AND s.execution_status = 'running') THEN
    RAISE EXCEPTION 'invalid state transition: hold % backs a running session', v_hold.id
      USING ERRCODE = 'KE007', HINT = 'Complete or cancel the session: it settles its own hold.';
  END IF;
  IF v_account.account_status <> 'active' THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status
      USING ERRCODE = 'KE012', DETAIL = coalesce(v_account.suspended_reason, '');
  END IF;
  IF v_amount > v_hold.amount THEN
    RAISE EXCEPTION 'invalid amount: capture % exceeds hold %', v_amount, v_hold.amount
      USING ERRCODE = 'KE004', HINT = 'Capture at most the held amount; deduct the rest with keen.deduct_credits().';
  END IF;
  -- 5. The ledger row (its id derives from the hold: a hold is captured once), the hold.
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after,
          session_id, hold_id, description, created_at)
  VALUES (pg_catalog.md5(v_hold.id::text || ':capture')::uuid, v_user_id, v_account.id,
          v_account.last_entry_no + 1, 'usage', -v_amount, v_account.current_balance,
          v_account.current_balance - v_amount, v_hold.session_id, v_hold.id,
          coalesce(p_description, 'hold capture'), v_now)
  RETURNING t.* INTO v_entry;
  UPDATE keen.credit_holds AS h
     SET status = 'captured', captured_amount = v_amount, capture_transaction_id = v_entry.id, resolved_at = v_now
   WHERE h.user_id = v_user_id AND h.id = v_hold.id;
  -- 6. The account: balance, the whole hold freed, the usage counted on the local day.
  v_today := (v_now AT TIME ZONE coalesce(v_account.timezone, 'UTC'))::date;
  v_month := pg_catalog.date_trunc('month', v_today)::date;
  UPDATE keen.credit_accounts AS a
     SET current_balance = v_entry.balance_after, last_entry_no = v_entry.entry_no,
         held_amount = a.held_amount - v_hold.amount,
         lifetime_spent = a.lifetime_spent + v_amount,
         spent_today = CASE WHEN a.spent_today_date = v_today THEN a.spent_today + v_amount
                            WHEN a.spent_today_date > v_today THEN a.spent_today ELSE v_amount END,
         spent_today_date = GREATEST(a.spent_today_date, v_today),
         spent_this_month = CASE WHEN a.spent_month_start = v_month THEN a.spent_this_month + v_amount
                                 WHEN a.spent_month_start > v_month THEN a.spent_this_month ELSE v_amount END,
         spent_month_start = GREATEST(a.spent_month_start, v_month),
         updated_at = v_now
   WHERE a.user_id = v_user_id;
  -- 7. The day's statistics; 8. auto-recharge, as for a deduction.
  PERFORM keen.add_ledger_usage(v_user_id, v_today, 'usage', -v_amount);
  IF v_account.auto_recharge_enabled AND v_entry.balance_after < v_account.auto_recharge_threshold THEN
    PERFORM keen.request_recharge(v_user_id, v_account.id, v_account.auto_recharge_amount, v_entry.id,
                                  v_entry.balance_after);
  END IF;
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
  v_hold keen.credit_holds;
BEGIN
  -- Account first, then the hold: the lock order of every movement.
  PERFORM FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id FOR UPDATE;
  SELECT h.* INTO v_hold FROM keen.credit_holds AS h
   WHERE h.user_id = v_user_id AND h.id = p_hold_id
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'KE006';
  END IF;
  IF v_hold.status = 'captured' THEN
    RAISE EXCEPTION 'hold % is already captured', p_hold_id USING ERRCODE = 'KE007';
  END IF;
  -- Releasing a released or expired hold is a no-op: its credits are free already.
  IF v_hold.status = 'active' THEN
    -- A running session's hold backs the cost it has accepted: only the session's completion
    -- (or cancel) settles it, so its agents never accept a cost that is then not paid.
    IF v_hold.session_id IS NOT NULL AND EXISTS (
         SELECT FROM keen.agent_sessions AS s
          WHERE s.user_id = v_user_id AND s.id = v_hold.session_id AND s.execution_status = 'running') THEN
      RAISE EXCEPTION 'invalid state transition: hold % backs a running session', v_hold.id
        USING ERRCODE = 'KE007', HINT = 'Complete or cancel the session: it settles its own hold.';
    END IF;
    UPDATE keen.credit_holds AS h SET status = 'released', resolved_at = pg_catalog.now()
     WHERE h.user_id = v_user_id AND h.id = p_hold_id
    RETURNING h.* INTO v_hold;
    UPDATE keen.credit_accounts AS a
       SET held_amount = a.held_amount - v_hold.amount, updated_at = pg_catalog.now()
     WHERE a.user_id = v_user_id;
  END IF;
  RETURN v_hold;
END
$$;

CREATE OR REPLACE FUNCTION keen.check_credits(p_amount numeric)
RETURNS TABLE (sufficient boolean, current_balance numeric, available_balance numeric,
               required numeric, shortfall numeric)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_amount numeric := keen.validate_credit_amount(p_amount);
  v_balance numeric;
  v_available numeric;
BEGIN
  -- Holds past their expiry no longer count, swept or not.
  SELECT a.current_balance,
         a.current_balance - (SELECT coalesce(sum(h.amount), 0) FROM keen.credit_holds AS h
                               WHERE h.user_id = v_user_id AND h.status = 'active'
                                 AND h.expires_at > pg_catalog.now())
    INTO v_balance, v_available
    FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
  RETURN QUERY SELECT v_available >= v_amount, v_balance, v_available, v_amount,
                      GREATEST(v_amount - v_available, 0::numeric);
END
$$;

CREATE OR REPLACE FUNCTION keen.credit_balance()
RETURNS TABLE (current_balance numeric, held_amount numeric, available_balance numeric,
               lifetime_purchased numeric, lifetime_spent numeric, spent_today numeric,
               spent_this_month numeric, daily_limit numeric, monthly_limit numeric)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_today date := keen.credit_local_date(v_user_id, pg_catalog.now());
BEGIN
  RETURN QUERY
  SELECT a.current_balance, v.held, a.current_balance - v.held, a.lifetime_purchased, a.lifetime_spent,
         CASE WHEN a.spent_today_date = v_today THEN a.spent_today ELSE 0 END,
         CASE WHEN a.spent_month_start = pg_catalog.date_trunc('month', v_today)::date
              THEN a.spent_this_month ELSE 0 END,
         a.daily_limit, a.monthly_limit
    FROM keen.credit_accounts AS a
   CROSS JOIN LATERAL (SELECT coalesce(sum(h.amount), 0) AS held FROM keen.credit_holds AS h
                        WHERE h.user_id = v_user_id AND h.status = 'active'
                          AND h.expires_at > pg_catalog.now()) AS v
   WHERE a.user_id = v_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
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
  UPDATE keen.credit_accounts AS a
     SET daily_limit = p_daily_limit, monthly_limit = p_monthly_limit, updated_at = pg_catalog.now()
   WHERE a.user_id = v_user_id
  RETURNING a.* INTO v_account;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
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
  UPDATE keen.credit_accounts AS a
     SET auto_recharge_enabled = p_enabled,
         auto_recharge_threshold = coalesce(p_threshold, a.auto_recharge_threshold),
         auto_recharge_amount = coalesce(p_amount, a.auto_recharge_amount),
         updated_at = pg_catalog.now()
   WHERE a.user_id = v_user_id
  RETURNING a.* INTO v_account;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
  RETURN v_account;
END
$$;

CREATE OR REPLACE FUNCTION keen.sweep_expired_holds()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
  v_expired integer;
  v_count integer := 0;
BEGIN
  -- Per tenant (a Citus-ready operator job), each under its account lock, in user order.
  FOR v_user_id IN
    SELECT DISTINCT h.user_id FROM keen.credit_holds AS h
     WHERE h.status = 'active' AND h.expires_at <= pg_catalog.now()
     ORDER BY h.user_id
  LOOP
    PERFORM FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id FOR UPDATE;
    SELECT e.p_expired INTO v_expired FROM keen.expire_lapsed_holds(v_user_id) AS e;
    v_count := v_count + v_expired;
  END LOOP;
  RETURN v_count;
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
  PERFORM FROM keen.credit_accounts AS a WHERE a.user_id = v_request.user_id FOR UPDATE;
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r
   WHERE r.user_id = v_request.user_id AND r.id = p_request_id
     FOR UPDATE;
  IF v_request.status = 'completed' THEN
    -- A repeated webhook gets the original purchase.
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = v_request.user_id AND t.id = v_request.purchase_transaction_id;
    RETURN v_entry;
  ELSIF v_request.status = 'failed' THEN
    RAISE EXCEPTION 'recharge request % already failed', p_request_id USING ERRCODE = 'KE007';
  END IF;
  -- The purchase is an ordinary credit movement, keyed by the request.
  v_entry := keen.post_credit(v_request.user_id, v_request.amount, 'purchase', 'auto-recharge',
                              'recharge:' || v_request.id::text, p_stripe_payment_intent_id,
                              pg_catalog.jsonb_build_object('recharge_request_id', v_request.id));
  UPDATE keen.recharge_requests AS r
     SET status = 'completed', resolved_at = pg_catalog.now(), purchase_transaction_id = v_entry.id
   WHERE r.user_id = v_request.user_id AND r.id = p_request_id;
  RETURN v_entry;
END
$$;

-- ===== grants ================================================================
-- keen_app reads the credit tables (SELECT, migration 0009) and calls the movements; the
-- helpers below run inside them as keen_owner.
REVOKE ALL ON FUNCTION
  keen.refuse_spending_limit(numeric, numeric, numeric, numeric, numeric, numeric, date),
  keen.expire_lapsed_holds(uuid),
  keen.add_ledger_usage(uuid, date, text, numeric),
  keen.request_recharge(uuid, uuid, numeric, uuid, numeric),
  keen.post_credit(uuid, numeric, text, text, text, text, jsonb),
  keen.extend_hold(uuid, uuid, numeric)
FROM PUBLIC;

-- ===== comments ==============================================================
COMMENT ON FUNCTION keen.refuse_spending_limit(numeric, numeric, numeric, numeric, numeric, numeric, date) IS
  'Raises KE002 or KE003 for an amount that spent + held would take over the daily or monthly limit.';
COMMENT ON FUNCTION keen.expire_lapsed_holds(uuid) IS
  'Under the caller''s account lock: expires the user''s lapsed holds; returns the new held_amount and how many expired.';
COMMENT ON FUNCTION keen.add_ledger_usage(uuid, date, text, numeric) IS
  'Adds one ledger row''s figure to the user''s daily_usage_stats of that day (keen.ledger_usage''s rule).';
COMMENT ON FUNCTION keen.request_recharge(uuid, uuid, numeric, uuid, numeric) IS
  'Records one pending auto-recharge request (none while one is open) and wakes the billing service.';
COMMENT ON FUNCTION keen.post_credit(uuid, numeric, text, text, text, text, jsonb) IS
  'The credit movement of add_credits and completed recharges: a purchase, refund or adjustment posted to a user''s account.';
COMMENT ON FUNCTION keen.extend_hold(uuid, uuid, numeric) IS
  'Internal (called by definer functions): adds p_amount to an active hold under the checks of hold_credits (KE001/KE002/KE003); writes nothing on refusal.';
COMMENT ON FUNCTION keen.deduct_credits(numeric, uuid, text, text) IS
  'Charges usage atomically under the account lock: balance, holds, daily/monthly limits (holds count as spending to come), idempotency key.';
COMMENT ON FUNCTION keen.capture_hold(uuid, numeric, text) IS
  'Charges at most the held amount (default all of it) and frees the rest, never refused for balance or limits; a retry with the same amount and description returns the original entry, other arguments KE005.';
COMMENT ON COLUMN keen.credit_accounts.spent_today IS 'Usage posted on spent_today_date; kept from the ledger by the movements.';
COMMENT ON COLUMN keen.credit_accounts.updated_at IS 'When the row was last updated (set by the function that writes it).';
COMMENT ON COLUMN keen.credit_accounts.next_hold_expiry IS 'Earliest expiry of the active holds (or earlier); NULL when none. Once past, the next movement expires lapsed holds.';
COMMENT ON COLUMN keen.credit_transactions.created_at IS 'When the entry was posted (server time, set by the movement).';

RESET ROLE;
