-- Roll back 0021_check_functions: the CHECKs of before, as expressions, the functions gone.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';
-- squawk-ignore-file ban-drop-constraint
-- squawk-ignore-file constraint-missing-not-valid

ALTER TABLE keen.credit_accounts
  DROP CONSTRAINT credit_accounts_check,
  ADD CONSTRAINT credit_accounts_figures_check CHECK (
    LEAST(current_balance, held_amount, lifetime_purchased, lifetime_spent,
          auto_recharge_threshold, spent_today, spent_this_month) >= 0
    AND LEAST(daily_limit, monthly_limit, auto_recharge_amount) > 0
    AND GREATEST(current_balance, held_amount, lifetime_purchased, lifetime_spent, daily_limit,
                 monthly_limit, auto_recharge_threshold, auto_recharge_amount, spent_today,
                 spent_this_month) < 'NaN'
    AND held_amount <= current_balance
    AND last_entry_no >= 0),
  ADD CONSTRAINT credit_accounts_account_status_check
    CHECK (account_status IN ('active', 'suspended', 'closed')),
  ADD CONSTRAINT credit_accounts_suspended_reason_check
    CHECK (suspended_reason IS NULL OR account_status <> 'active');

ALTER TABLE keen.credit_transactions
  DROP CONSTRAINT credit_transactions_check,
  ADD CONSTRAINT credit_transactions_transaction_type_check
    CHECK (transaction_type IN ('purchase', 'usage', 'refund', 'adjustment')),
  ADD CONSTRAINT credit_transactions_figures_check CHECK (
    CASE transaction_type WHEN 'usage' THEN amount < 0
                          WHEN 'adjustment' THEN amount <> 0
                          ELSE amount > 0 END
    AND GREATEST(amount, balance_before, balance_after) < 'NaN'
    AND LEAST(balance_before, balance_after) >= 0
    AND balance_after = balance_before + amount
    AND entry_no > 0),
  ADD CONSTRAINT credit_transactions_idempotency_key_check
    CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255),
  ADD CONSTRAINT credit_transactions_stripe_payment_intent_id_check
    CHECK (stripe_payment_intent_id IS NULL OR length(stripe_payment_intent_id) BETWEEN 1 AND 255);

ALTER TABLE keen.daily_usage_stats
  DROP CONSTRAINT daily_usage_stats_counts_check,
  ADD CONSTRAINT daily_usage_stats_counts_check CHECK (
    sessions_started >= 0 AND sessions_completed >= 0 AND sessions_failed >= 0
    AND sessions_cancelled >= 0 AND tokens_used >= 0 AND tool_calls >= 0 AND total_cost >= 0
    AND credits_purchased >= 0 AND credits_spent >= 0 AND credits_refunded >= 0);

DROP FUNCTION keen.credit_accounts_row_ok(numeric, numeric, numeric, numeric, numeric,
  numeric, numeric, numeric, numeric, numeric, bigint, text, text);
DROP FUNCTION keen.credit_transactions_row_ok(text, numeric, numeric, numeric, bigint, text,
  text);
DROP FUNCTION keen.daily_usage_stats_counts_ok(integer, integer, integer, integer, bigint,
  bigint, numeric, numeric, numeric, numeric);
