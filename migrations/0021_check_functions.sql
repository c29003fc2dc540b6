-- CHECK constraints as function calls (issue 16): every CHECK of credit_accounts, of
-- credit_transactions and of daily_usage_stats becomes one CHECK per table, a call of an
-- IMMUTABLE PL/pgSQL function of the row's columns with exactly the same rules. PostgreSQL
-- compiles a CHECK's stored expression again in every statement that writes the table
-- (ExecConstraints: stringToNode, expression_planner, ExecInitExpr; about 37 instructions per
-- character of pg_constraint.conbin): 48 % of a deduction's instructions before. A PL/pgSQL
-- function's expression is planned once per session. One CHECK per table, not one function
-- per former CHECK: each call costs its own function-call and search_path setup (measured in
-- bench/credits/REPORT.md). A violation is still SQLSTATE 23514, naming the table's CHECK:
-- credit_accounts_check (was _figures_, _account_status_, _suspended_reason_check),
-- credit_transactions_check (was _figures_, _transaction_type_, _idempotency_key_,
-- _stripe_payment_intent_id_check), daily_usage_stats_counts_check (its name kept). The
-- functions are not executable by PUBLIC (default privileges): a CHECK runs them as the
-- writing role, which is keen_owner (the definer functions), the owner or a superuser.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';
-- The old CHECKs are dropped in the statement that adds the new one (no rule is ever off),
-- which scans the table under the ACCESS EXCLUSIVE lock that the drops take anyway.
-- squawk-ignore-file ban-drop-constraint
-- squawk-ignore-file constraint-missing-not-valid

-- ===== functions ===============================================================

-- Every rule of an account row, the one CHECK of credit_accounts (credit_accounts_check). The
-- figures: LEAST(…) >= 0 is "none negative"; GREATEST(…) < 'NaN' is "none NaN" (numeric
-- accepts 'NaN', which sorts above every number: it passes `>= 0`, and only NaN is not
-- < 'NaN'); both skip NULLs, so a NULL (unset) limit passes and a set one must be > 0 and not
-- NaN. Then the status and the suspension reason (only on an account that is not active).
-- A function, not the expression itself: PostgreSQL compiles a CHECK's stored expression
-- again in every statement that writes the table (about 37 instructions per character of
-- pg_constraint.conbin), a PL/pgSQL expression once per session (migration 0021,
-- bench/credits/REPORT.md). Not STRICT: a NULL result passes a CHECK, as the expression's did.
CREATE FUNCTION keen.credit_accounts_row_ok(
  p_current_balance numeric, p_held_amount numeric, p_lifetime_purchased numeric,
  p_lifetime_spent numeric, p_daily_limit numeric, p_monthly_limit numeric,
  p_auto_recharge_threshold numeric, p_auto_recharge_amount numeric, p_spent_today numeric,
  p_spent_this_month numeric, p_last_entry_no bigint, p_account_status text,
  p_suspended_reason text)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN LEAST(p_current_balance, p_held_amount, p_lifetime_purchased, p_lifetime_spent,
               p_auto_recharge_threshold, p_spent_today, p_spent_this_month) >= 0
    AND LEAST(p_daily_limit, p_monthly_limit, p_auto_recharge_amount) > 0
    AND GREATEST(p_current_balance, p_held_amount, p_lifetime_purchased, p_lifetime_spent,
                 p_daily_limit, p_monthly_limit, p_auto_recharge_threshold,
                 p_auto_recharge_amount, p_spent_today, p_spent_this_month) < 'NaN'
    AND p_held_amount <= p_current_balance
    AND p_last_entry_no >= 0
    AND p_account_status IN ('active', 'suspended', 'closed')
    AND (p_suspended_reason IS NULL OR p_account_status <> 'active');
END
$$;
COMMENT ON FUNCTION keen.credit_accounts_row_ok(numeric, numeric, numeric, numeric, numeric, numeric, numeric,
  numeric, numeric, numeric, bigint, text, text) IS
  'Every rule of a credit_accounts row (its CHECK credit_accounts_check): figures, status, suspension reason.';

-- Every rule of a ledger entry, the one CHECK of credit_transactions (credit_transactions_check),
-- a function for the reason given at keen.credit_accounts_row_ok. A known type; credits come
-- in by purchase and refund and go out by usage; adjustments go either way but are never
-- zero; no figure is NaN (only NaN is not < 'NaN'); balances never negative and chained; the
-- idempotency key and the Stripe payment id 1 to 255 characters when given.
CREATE FUNCTION keen.credit_transactions_row_ok(
  p_transaction_type text, p_amount numeric, p_balance_before numeric,
  p_balance_after numeric, p_entry_no bigint, p_idempotency_key text,
  p_stripe_payment_intent_id text)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN p_transaction_type IN ('purchase', 'usage', 'refund', 'adjustment')
    AND CASE p_transaction_type WHEN 'usage' THEN p_amount < 0
                                WHEN 'adjustment' THEN p_amount <> 0
                                ELSE p_amount > 0 END
    AND GREATEST(p_amount, p_balance_before, p_balance_after) < 'NaN'
    AND LEAST(p_balance_before, p_balance_after) >= 0
    AND p_balance_after = p_balance_before + p_amount
    AND p_entry_no > 0
    AND (p_idempotency_key IS NULL OR pg_catalog.length(p_idempotency_key) BETWEEN 1 AND 255)
    AND (p_stripe_payment_intent_id IS NULL
         OR pg_catalog.length(p_stripe_payment_intent_id) BETWEEN 1 AND 255);
END
$$;
COMMENT ON FUNCTION keen.credit_transactions_row_ok(text, numeric, numeric, numeric, bigint, text, text) IS
  'Every rule of a ledger entry (its CHECK credit_transactions_check): type, signed amount, chained balances, key lengths.';

-- The counts rule of a day's statistics row (daily_usage_stats_counts_check): none negative.
-- A function for the reason given at keen.credit_accounts_row_ok (migration 0021).
CREATE FUNCTION keen.daily_usage_stats_counts_ok(
  p_sessions_started integer, p_sessions_completed integer, p_sessions_failed integer,
  p_sessions_cancelled integer, p_tokens_used bigint, p_tool_calls bigint,
  p_total_cost numeric, p_credits_purchased numeric, p_credits_spent numeric,
  p_credits_refunded numeric)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN p_sessions_started >= 0 AND p_sessions_completed >= 0 AND p_sessions_failed >= 0
    AND p_sessions_cancelled >= 0 AND p_tokens_used >= 0 AND p_tool_calls >= 0
    AND p_total_cost >= 0 AND p_credits_purchased >= 0 AND p_credits_spent >= 0
    AND p_credits_refunded >= 0;
END
$$;
COMMENT ON FUNCTION keen.daily_usage_stats_counts_ok(integer, integer, integer, integer, bigint, bigint,
  numeric, numeric, numeric, numeric) IS
  'The rule of a daily_usage_stats row (its CHECK daily_usage_stats_counts_check): no count negative.';

-- ===== constraints =============================================================

ALTER TABLE keen.credit_accounts
  DROP CONSTRAINT credit_accounts_figures_check,
  DROP CONSTRAINT credit_accounts_account_status_check,
  DROP CONSTRAINT credit_accounts_suspended_reason_check,
  ADD CONSTRAINT credit_accounts_check CHECK (keen.credit_accounts_row_ok(
    current_balance, held_amount, lifetime_purchased, lifetime_spent, daily_limit,
    monthly_limit, auto_recharge_threshold, auto_recharge_amount, spent_today,
    spent_this_month, last_entry_no, account_status, suspended_reason));

ALTER TABLE keen.credit_transactions
  DROP CONSTRAINT credit_transactions_transaction_type_check,
  DROP CONSTRAINT credit_transactions_figures_check,
  DROP CONSTRAINT credit_transactions_idempotency_key_check,
  DROP CONSTRAINT credit_transactions_stripe_payment_intent_id_check,
  ADD CONSTRAINT credit_transactions_check CHECK (keen.credit_transactions_row_ok(
    transaction_type, amount, balance_before, balance_after, entry_no, idempotency_key,
    stripe_payment_intent_id));

ALTER TABLE keen.daily_usage_stats
  DROP CONSTRAINT daily_usage_stats_counts_check,
  ADD CONSTRAINT daily_usage_stats_counts_check CHECK (keen.daily_usage_stats_counts_ok(
    sessions_started, sessions_completed, sessions_failed, sessions_cancelled, tokens_used,
    tool_calls, total_cost, credits_purchased, credits_spent, credits_refunded));
