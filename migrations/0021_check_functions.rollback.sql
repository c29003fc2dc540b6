-- Roll back 0021_check_functions: the three CHECKs as expressions again, the functions gone.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';
-- squawk-ignore-file ban-drop-constraint
-- squawk-ignore-file constraint-missing-not-valid

ALTER TABLE keen.credit_accounts
  DROP CONSTRAINT credit_accounts_figures_check,
  ADD CONSTRAINT credit_accounts_figures_check CHECK (
    LEAST(current_balance, held_amount, lifetime_purchased, lifetime_spent,
          auto_recharge_threshold, spent_today, spent_this_month) >= 0
    AND LEAST(daily_limit, monthly_limit, auto_recharge_amount) > 0
    AND GREATEST(current_balance, held_amount, lifetime_purchased, lifetime_spent, daily_limit,
                 monthly_limit, auto_recharge_threshold, auto_recharge_amount, spent_today,
                 spent_this_month) < 'NaN'
    AND held_amount <= current_balance
    AND last_entry_no >= 0);

ALTER TABLE keen.credit_transactions
  DROP CONSTRAINT credit_transactions_figures_check,
  ADD CONSTRAINT credit_transactions_figures_check CHECK (
    CASE transaction_type WHEN 'usage' THEN amount < 0
                          WHEN 'adjustment' THEN amount <> 0
                          ELSE amount > 0 END
    AND GREATEST(amount, balance_before, balance_after) < 'NaN'
    AND LEAST(balance_before, balance_after) >= 0
    AND balance_after = balance_before + amount
    AND entry_no > 0);

ALTER TABLE keen.daily_usage_stats
  DROP CONSTRAINT daily_usage_stats_counts_check,
  ADD CONSTRAINT daily_usage_stats_counts_check CHECK (
    sessions_started >= 0 AND sessions_completed >= 0 AND sessions_failed >= 0
    AND sessions_cancelled >= 0 AND tokens_used >= 0 AND tool_calls >= 0 AND total_cost >= 0
    AND credits_purchased >= 0 AND credits_spent >= 0 AND credits_refunded >= 0);

DROP FUNCTION keen.credit_accounts_figures_ok(numeric, numeric, numeric, numeric, numeric,
  numeric, numeric, numeric, numeric, numeric, bigint);
DROP FUNCTION keen.credit_transactions_figures_ok(text, numeric, numeric, numeric, bigint);
DROP FUNCTION keen.daily_usage_stats_counts_ok(integer, integer, integer, integer, bigint,
  bigint, numeric, numeric, numeric, numeric);
