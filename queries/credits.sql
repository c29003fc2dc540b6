-- Credits: purchases, deductions, holds, limits, auto-recharge (tenant, inside db.tenant(user_id)),
-- and the operator/billing functions (claim, complete and fail recharge requests, sweeping
-- holds, verifying the ledger), which run as an operator login, never as keen_app.

-- name: AddCredits :one
-- Credits a purchase (type omitted), refund or adjustment; a retried key (or payment intent) returns the original entry.
SELECT * FROM keen.add_credits(
  p_amount => sqlc.arg(amount)::numeric,
  p_transaction_type => sqlc.narg(transaction_type)::text,
  p_description => sqlc.narg(description)::text,
  p_idempotency_key => sqlc.narg(idempotency_key)::text,
  p_stripe_payment_intent_id => sqlc.narg(stripe_payment_intent_id)::text,
  p_metadata => sqlc.narg(metadata)::jsonb
);

-- name: CaptureHold :one
-- Charges at most the held amount (all of it when amount is omitted) and frees the rest; once per hold.
SELECT * FROM keen.capture_hold(
  p_hold_id => sqlc.arg(hold_id)::uuid,
  p_amount => sqlc.narg(amount)::numeric,
  p_description => sqlc.narg(description)::text
);

-- name: CheckCredits :one
-- Whether the available balance (balance minus active holds) covers an amount, and the shortfall.
-- @not-null: *
SELECT c.sufficient, c.current_balance, c.available_balance, c.required, c.shortfall
FROM keen.check_credits(p_amount => sqlc.arg(amount)::numeric) AS c;

-- name: ClaimRechargeRequests :many
-- Billing operators: claims up to `limit` pending auto-recharge requests, and stale processing ones (SKIP LOCKED).
SELECT * FROM keen.claim_recharge_requests(
  p_limit => sqlc.arg('limit')::integer,
  p_reclaim_after => sqlc.narg(reclaim_after)::interval
);

-- name: CompleteRechargeRequest :one
-- Billing operators: credits a recharge as a purchase and closes its request; repeatable.
SELECT * FROM keen.complete_recharge_request(
  p_request_id => sqlc.arg(request_id)::uuid,
  p_stripe_payment_intent_id => sqlc.narg(stripe_payment_intent_id)::text
);

-- name: ConfigureAutoRecharge :one
-- Turns auto-recharge on or off; a NULL threshold or amount keeps the current one.
SELECT * FROM keen.configure_auto_recharge(
  p_enabled => sqlc.arg(enabled)::boolean,
  p_threshold => sqlc.narg(threshold)::numeric,
  p_amount => sqlc.narg(amount)::numeric
);

-- name: CreditBalance :one
-- The caller's balance, holds, lifetime totals, spending today and this month, and limits.
-- @not-null: *
-- @nullable: daily_limit, monthly_limit
SELECT b.current_balance, b.held_amount, b.available_balance, b.lifetime_purchased, b.lifetime_spent,
       b.spent_today, b.spent_this_month, b.daily_limit, b.monthly_limit
FROM keen.credit_balance() AS b;

-- name: DeductCredits :one
-- Charges usage atomically (balance, holds, daily/monthly limits); a retried key returns the original entry.
SELECT * FROM keen.deduct_credits(
  p_amount => sqlc.arg(amount)::numeric,
  p_session_id => sqlc.narg(session_id)::uuid,
  p_description => sqlc.narg(description)::text,
  p_idempotency_key => sqlc.narg(idempotency_key)::text
);

-- name: FailRechargeRequest :one
-- Billing operators: closes a recharge request as failed, with the reason.
SELECT * FROM keen.fail_recharge_request(
  p_request_id => sqlc.arg(request_id)::uuid,
  p_reason => sqlc.narg(reason)::text
);

-- name: HoldCredits :one
-- Reserves credits for a running agent until captured, released or expired (after expires_in; default 1 hour).
SELECT * FROM keen.hold_credits(
  p_session_id => sqlc.narg(session_id)::uuid,
  p_amount => sqlc.arg(amount)::numeric,
  p_idempotency_key => sqlc.narg(idempotency_key)::text,
  p_expires_in => sqlc.narg(expires_in)::interval
);

-- name: ListCreditTransactions :many
-- The caller's ledger, newest first (the ledger's own order, entry_no), at most `limit` rows.
SELECT t.* FROM keen.list_credit_transactions(p_limit => sqlc.arg('limit')::integer) AS t
ORDER BY t.entry_no DESC;

-- name: ReleaseHold :one
-- Frees a hold's credits; a no-op for a released or expired hold.
SELECT * FROM keen.release_hold(p_hold_id => sqlc.arg(hold_id)::uuid);

-- name: RoundCost :one
-- A 6-place session cost as the 4-place amount charged for it (rounded up, at most 0.0001 more).
SELECT keen.round_cost(p_cost => sqlc.arg(cost)::numeric) AS amount;

-- name: SetSpendingLimits :one
-- Sets the daily and monthly spending limits (NULL for none), counted in the user's time zone.
SELECT * FROM keen.set_spending_limits(
  p_daily_limit => sqlc.narg(daily_limit)::numeric,
  p_monthly_limit => sqlc.narg(monthly_limit)::numeric
);

-- name: SweepExpiredHolds :one
-- Operators: expires lapsed holds, freeing their credits; returns how many.
SELECT keen.sweep_expired_holds() AS expired;

-- name: VerifyLedger :many
-- Operators: one row per violated ledger invariant; empty when healthy.
-- @not-null: *
SELECT v.account_id, v.user_id, v.invariant, v.detail FROM keen.verify_ledger() AS v;
