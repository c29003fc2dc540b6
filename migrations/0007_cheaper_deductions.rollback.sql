-- Roll back 0007_cheaper_deductions: the separate CHECKs of credit_accounts and
-- credit_transactions and the previous usage-stats trigger and add_usage_deltas again.
SET ROLE keen_owner;

ALTER TABLE keen.credit_accounts
  DROP CONSTRAINT credit_accounts_figures_check,
  ADD CONSTRAINT credit_accounts_current_balance_check
    CHECK (current_balance >= 0 AND current_balance <> 'NaN'),
  ADD CONSTRAINT credit_accounts_held_amount_check CHECK (held_amount >= 0 AND held_amount <= current_balance),
  ADD CONSTRAINT credit_accounts_lifetime_check CHECK (
    lifetime_purchased >= 0 AND lifetime_spent >= 0 AND lifetime_purchased <> 'NaN' AND lifetime_spent <> 'NaN'),
  ADD CONSTRAINT credit_accounts_daily_limit_check
    CHECK (daily_limit IS NULL OR (daily_limit > 0 AND daily_limit <> 'NaN')),
  ADD CONSTRAINT credit_accounts_monthly_limit_check
    CHECK (monthly_limit IS NULL OR (monthly_limit > 0 AND monthly_limit <> 'NaN')),
  ADD CONSTRAINT credit_accounts_auto_recharge_check
    CHECK (auto_recharge_threshold >= 0 AND auto_recharge_amount > 0),
  ADD CONSTRAINT credit_accounts_last_entry_no_check CHECK (last_entry_no >= 0),
  ADD CONSTRAINT credit_accounts_spent_check CHECK (spent_today >= 0 AND spent_this_month >= 0);

ALTER TABLE keen.credit_transactions
  DROP CONSTRAINT credit_transactions_figures_check,
  ADD CONSTRAINT credit_transactions_amount_check CHECK (amount <> 0 AND amount <> 'NaN'),
  ADD CONSTRAINT credit_transactions_amount_sign_check CHECK (
    CASE transaction_type WHEN 'usage' THEN amount < 0
                          WHEN 'adjustment' THEN true
                          ELSE amount > 0 END),
  ADD CONSTRAINT credit_transactions_balance_check
    CHECK (balance_before >= 0 AND balance_after >= 0 AND balance_after = balance_before + amount
           AND balance_before <> 'NaN' AND balance_after <> 'NaN'),
  ADD CONSTRAINT credit_transactions_entry_no_check CHECK (entry_no > 0);

CREATE OR REPLACE FUNCTION keen.add_usage_deltas(p_deltas keen.usage_delta[])
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $$
DECLARE
  v_delta keen.usage_delta;
BEGIN
  -- Per (user, day), in key order (the lock order), skipping days whose figures do not
  -- change: add under the row lock (creating the row first if need be), so no update is lost.
  -- (Not one INSERT … ON CONFLICT DO UPDATE: the CHECK is tested on the proposed row
  -- before the conflict is found, and a decrement is a negative proposed row.)
  FOR v_delta IN
    SELECT x.user_id, x.date_bucket, pg_catalog.sum(x.sessions_started),
           pg_catalog.sum(x.sessions_completed), pg_catalog.sum(x.sessions_failed),
           pg_catalog.sum(x.sessions_cancelled), pg_catalog.sum(x.tokens_used),
           pg_catalog.sum(x.tool_calls), pg_catalog.sum(x.total_cost),
           pg_catalog.sum(x.credits_purchased), pg_catalog.sum(x.credits_spent),
           pg_catalog.sum(x.credits_refunded), pg_catalog.sum(x.credits_adjusted)
    FROM pg_catalog.unnest(p_deltas) AS x
    GROUP BY x.user_id, x.date_bucket
    ORDER BY x.user_id, x.date_bucket
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
BEGIN
  -- The ledger is append-only: only inserts arrive here.
  PERFORM keen.add_usage_deltas(keen.ledger_usage(NEW, coalesce(
    (SELECT u.timezone FROM keen.users AS u WHERE u.id = NEW.user_id), 'UTC')));
  RETURN NULL;
END
$$;

RESET ROLE;
