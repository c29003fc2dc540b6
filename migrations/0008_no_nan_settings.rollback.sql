-- Roll back 0008_no_nan_settings: the figures CHECK of 0007 again.
SET ROLE keen_owner;

ALTER TABLE keen.credit_accounts
  DROP CONSTRAINT credit_accounts_figures_check,
  ADD CONSTRAINT credit_accounts_figures_check CHECK (
    LEAST(current_balance, held_amount, lifetime_purchased, lifetime_spent,
          auto_recharge_threshold, spent_today, spent_this_month) >= 0
    AND LEAST(daily_limit, monthly_limit, auto_recharge_amount) > 0
    AND GREATEST(current_balance, lifetime_purchased, lifetime_spent, daily_limit, monthly_limit) < 'NaN'
    AND held_amount <= current_balance
    AND last_entry_no >= 0);
