-- Cheaper credit deductions, same rules: the CHECKs of credit_accounts (10) and
-- credit_transactions (6) merged into one "figures" CHECK each beside the unchanged enum,
-- suspended-reason and idempotency-key ones (every DML statement compiles each CHECK again,
-- per operator); the ledger's usage-stats trigger adds to an existing (user, day) row in one
-- UPDATE and takes the general path (keen.add_usage_deltas) only for the day's first row;
-- add_usage_deltas skips its aggregation for one delta. bench/credits/REPORT.md measures it.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

-- Each old CHECK is dropped only together with the merged one that keeps its rule (same
-- statement), and the new CHECK scans the table under the ACCESS EXCLUSIVE lock that the
-- drops take anyway (NOT VALID + VALIDATE in yoyo's one transaction would hold it as long).
-- squawk-ignore-file ban-drop-constraint
-- squawk-ignore-file constraint-missing-not-valid
ALTER TABLE keen.credit_accounts
  DROP CONSTRAINT credit_accounts_current_balance_check,
  DROP CONSTRAINT credit_accounts_held_amount_check,
  DROP CONSTRAINT credit_accounts_lifetime_check,
  DROP CONSTRAINT credit_accounts_daily_limit_check,
  DROP CONSTRAINT credit_accounts_monthly_limit_check,
  DROP CONSTRAINT credit_accounts_auto_recharge_check,
  DROP CONSTRAINT credit_accounts_last_entry_no_check,
  DROP CONSTRAINT credit_accounts_spent_check,
  ADD CONSTRAINT credit_accounts_figures_check CHECK (
    LEAST(current_balance, held_amount, lifetime_purchased, lifetime_spent,
          auto_recharge_threshold, spent_today, spent_this_month) >= 0
    AND LEAST(daily_limit, monthly_limit, auto_recharge_amount) > 0
    AND GREATEST(current_balance, lifetime_purchased, lifetime_spent, daily_limit, monthly_limit) < 'NaN'
    AND held_amount <= current_balance
    AND last_entry_no >= 0);

ALTER TABLE keen.credit_transactions
  DROP CONSTRAINT credit_transactions_amount_check,
  DROP CONSTRAINT credit_transactions_amount_sign_check,
  DROP CONSTRAINT credit_transactions_balance_check,
  DROP CONSTRAINT credit_transactions_entry_no_check,
  ADD CONSTRAINT credit_transactions_figures_check CHECK (
    CASE transaction_type WHEN 'usage' THEN amount < 0
                          WHEN 'adjustment' THEN amount <> 0
                          ELSE amount > 0 END
    AND GREATEST(amount, balance_before, balance_after) < 'NaN'
    AND LEAST(balance_before, balance_after) >= 0
    AND balance_after = balance_before + amount
    AND entry_no > 0);

CREATE OR REPLACE FUNCTION keen.add_usage_deltas(p_deltas keen.usage_delta[])
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $$
DECLARE
  v_deltas keen.usage_delta[] := p_deltas;
  v_delta keen.usage_delta;
BEGIN
  -- Per (user, day), in key order (the lock order), skipping days whose figures do not
  -- change: add under the row lock (creating the row first if need be), so no update is lost.
  -- (Not one INSERT … ON CONFLICT DO UPDATE: the CHECK is tested on the proposed row
  -- before the conflict is found, and a decrement is a negative proposed row.)
  -- One delta (a ledger row's first of the day, a session's start) needs no aggregation.
  IF pg_catalog.cardinality(v_deltas) > 1 THEN
    v_deltas := ARRAY(
      SELECT ROW(x.user_id, x.date_bucket, pg_catalog.sum(x.sessions_started),
                 pg_catalog.sum(x.sessions_completed), pg_catalog.sum(x.sessions_failed),
                 pg_catalog.sum(x.sessions_cancelled), pg_catalog.sum(x.tokens_used),
                 pg_catalog.sum(x.tool_calls), pg_catalog.sum(x.total_cost),
                 pg_catalog.sum(x.credits_purchased), pg_catalog.sum(x.credits_spent),
                 pg_catalog.sum(x.credits_refunded), pg_catalog.sum(x.credits_adjusted))::keen.usage_delta
      FROM pg_catalog.unnest(v_deltas) AS x
      GROUP BY x.user_id, x.date_bucket
      ORDER BY x.user_id, x.date_bucket);
  END IF;
  FOREACH v_delta IN ARRAY coalesce(v_deltas, '{}')
  LOOP
    CONTINUE WHEN (v_delta.sessions_started, v_delta.sessions_completed, v_delta.sessions_failed,
                   v_delta.sessions_cancelled, v_delta.tokens_used, v_delta.tool_calls,
                   v_delta.total_cost, v_delta.credits_purchased, v_delta.credits_spent,
                   v_delta.credits_refunded, v_delta.credits_adjusted)
                  = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    LOOP
      UPDATE keen.daily_usage_stats AS d
      SET sessions_started = d.sessions_started + v_delta.sessions_started,
          sessions_completed = d.sessions_completed + v_delta.sessions_completed,
          sessions_failed = d.sessions_failed + v_delta.sessions_failed,
          sessions_cancelled = d.sessions_cancelled + v_delta.sessions_cancelled,
          tokens_used = d.tokens_used + v_delta.tokens_used,
          tool_calls = d.tool_calls + v_delta.tool_calls,
          total_cost = d.total_cost + v_delta.total_cost,
          credits_purchased = d.credits_purchased + v_delta.credits_purchased,
          credits_spent = d.credits_spent + v_delta.credits_spent,
          credits_refunded = d.credits_refunded + v_delta.credits_refunded,
          credits_adjusted = d.credits_adjusted + v_delta.credits_adjusted,
          updated_at = pg_catalog.now()
      WHERE d.user_id = v_delta.user_id AND d.date_bucket = v_delta.date_bucket;
      EXIT WHEN FOUND;
      -- The day's first figures: create the row (a concurrent creator wins, then we add).
      INSERT INTO keen.daily_usage_stats (user_id, date_bucket)
      VALUES (v_delta.user_id, v_delta.date_bucket)
      ON CONFLICT (user_id, date_bucket) DO NOTHING;
    END LOOP;
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_credit_transactions__track_usage()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  -- The ledger is append-only: only inserts arrive here. A ledger row is one (user, day)
  -- delta, never all zero (amount <> 0).
  v_delta keen.usage_delta := (keen.ledger_usage(NEW, coalesce(
    (SELECT u.timezone FROM keen.users AS u WHERE u.id = NEW.user_id), 'UTC')))[1];
BEGIN
  -- The common case, the day's row exists: add to it under its row lock, as
  -- keen.add_usage_deltas would, without its aggregation (one statement instead of three).
  UPDATE keen.daily_usage_stats AS d
  SET credits_purchased = d.credits_purchased + v_delta.credits_purchased,
      credits_spent = d.credits_spent + v_delta.credits_spent,
      credits_refunded = d.credits_refunded + v_delta.credits_refunded,
      credits_adjusted = d.credits_adjusted + v_delta.credits_adjusted,
      updated_at = pg_catalog.now()
  WHERE d.user_id = v_delta.user_id AND d.date_bucket = v_delta.date_bucket;
  IF NOT FOUND THEN
    -- The day's first figures: the general path creates the row (and handles the race
    -- with a concurrent creator).
    PERFORM keen.add_usage_deltas(ARRAY[v_delta]);
  END IF;
  RETURN NULL;
END
$$;

RESET ROLE;
