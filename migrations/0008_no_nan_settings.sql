-- No figure of a credit account is NaN: credit_accounts_figures_check now lists every
-- numeric column in its "none NaN" rule. Before, auto_recharge_threshold and
-- auto_recharge_amount could be set to NaN by a direct UPDATE as keen_app (NaN passes >= 0
-- and > 0, and configure_auto_recharge's validation is not on that path); every later
-- deduction of that tenant then failed with a raw 23514 from recharge_requests. The derived
-- counters (held_amount, spent_today, spent_this_month) are listed too: one rule, all figures.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

-- The new CHECK replaces the old one in the same statement and scans the table under the
-- ACCESS EXCLUSIVE lock the drop takes anyway (as in 0007).
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
