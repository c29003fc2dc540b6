-- Prepaid credits: one account per user, an append-only ledger, holds, recharge requests.
SET ROLE keen_owner;

-- ===== CHECK functions =======================================================
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

-- ===== tables ================================================================
CREATE TABLE keen.credit_accounts (
  id                       uuid          NOT NULL DEFAULT gen_random_uuid(),
  user_id                  uuid          NOT NULL,
  current_balance          numeric(12,4) NOT NULL DEFAULT 0,
  -- Sum of the account's active holds, kept by the hold functions under the account lock.
  held_amount              numeric(12,4) NOT NULL DEFAULT 0,
  lifetime_purchased       numeric(14,4) NOT NULL DEFAULT 0,
  lifetime_spent           numeric(14,4) NOT NULL DEFAULT 0,
  daily_limit              numeric(12,4),
  monthly_limit            numeric(12,4),
  auto_recharge_enabled    boolean       NOT NULL DEFAULT false,
  auto_recharge_threshold  numeric(12,4) NOT NULL DEFAULT 10,
  auto_recharge_amount     numeric(12,4) NOT NULL DEFAULT 50,
  account_status           text          NOT NULL DEFAULT 'active',
  suspended_reason         text,
  -- Number of the last ledger entry (credit_transactions.entry_no) of this account.
  last_entry_no            bigint        NOT NULL DEFAULT 0,
  -- Spending counters for the limits, kept from the ledger under the account lock: usage
  -- posted on the local day spent_today_date / in the local month from spent_month_start.
  spent_today_date         date,
  spent_today              numeric(14,4) NOT NULL DEFAULT 0,
  spent_month_start        date,
  spent_this_month         numeric(14,4) NOT NULL DEFAULT 0,
  created_at               timestamptz   NOT NULL DEFAULT now(),
  updated_at               timestamptz   NOT NULL DEFAULT now(),
  -- Earliest expiry among the active holds (or earlier), NULL when none: once it has passed,
  -- the next movement expires the lapsed holds under the account lock (migration 0012).
  next_hold_expiry         timestamptz,
  CONSTRAINT credit_accounts_pkey PRIMARY KEY (user_id, id),
  CONSTRAINT credit_accounts_user_id_key UNIQUE (user_id),
  CONSTRAINT credit_accounts_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  -- Every rule of the row in one CHECK, a function call (keen.credit_accounts_row_ok).
  CONSTRAINT credit_accounts_check CHECK (keen.credit_accounts_row_ok(
    current_balance, held_amount, lifetime_purchased, lifetime_spent, daily_limit,
    monthly_limit, auto_recharge_threshold, auto_recharge_amount, spent_today,
    spent_this_month, last_entry_no, account_status, suspended_reason))
)
-- Every ledger entry updates its account row: free room on each page lets the update stay on
-- the page (HOT), without new entries in the three indexes (bench/credits: ~7 % per deduction).
WITH (fillfactor = 50);

CREATE TABLE keen.credit_transactions (
  id                        uuid          NOT NULL DEFAULT gen_random_uuid(),
  user_id                   uuid          NOT NULL,
  account_id                uuid          NOT NULL,
  -- Position in the account's ledger: 1, 2, 3… assigned under the account's row lock.
  entry_no                  bigint        NOT NULL,
  transaction_type          text          NOT NULL,
  amount                    numeric(12,4) NOT NULL,
  balance_before            numeric(12,4) NOT NULL,
  balance_after             numeric(12,4) NOT NULL,
  claude_cost_usd           numeric(12,6),
  markup_multiplier         numeric(4,2),
  session_id                uuid,
  hold_id                   uuid,
  description               text          NOT NULL,
  metadata                  jsonb         NOT NULL DEFAULT '{}',
  idempotency_key           text,
  -- Fingerprint of the call's arguments: a retried key with other arguments is refused.
  request_fingerprint       text,
  stripe_payment_intent_id  text,
  created_at                timestamptz   NOT NULL DEFAULT now(),
  created_by_ip             inet,
  CONSTRAINT credit_transactions_pkey PRIMARY KEY (user_id, id),
  CONSTRAINT credit_transactions_user_id_entry_no_key UNIQUE (user_id, entry_no),
  CONSTRAINT credit_transactions_account_fkey FOREIGN KEY (user_id, account_id)
    REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_transactions_session_fkey FOREIGN KEY (user_id, session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT,
  -- Every rule of the entry in one CHECK, a function call (keen.credit_transactions_row_ok).
  CONSTRAINT credit_transactions_check CHECK (keen.credit_transactions_row_ok(
    transaction_type, amount, balance_before, balance_after, entry_no, idempotency_key,
    stripe_payment_intent_id))
);

CREATE TABLE keen.credit_holds (
  id                      uuid          NOT NULL DEFAULT gen_random_uuid(),
  user_id                 uuid          NOT NULL,
  account_id              uuid          NOT NULL,
  session_id              uuid,
  amount                  numeric(12,4) NOT NULL,
  captured_amount         numeric(12,4),
  status                  text          NOT NULL DEFAULT 'active',
  idempotency_key         text,
  request_fingerprint     text,
  expires_at              timestamptz   NOT NULL,
  capture_transaction_id  uuid,
  created_at              timestamptz   NOT NULL DEFAULT now(),
  resolved_at             timestamptz,
  CONSTRAINT credit_holds_pkey PRIMARY KEY (user_id, id),
  CONSTRAINT credit_holds_account_fkey FOREIGN KEY (user_id, account_id)
    REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_holds_session_fkey FOREIGN KEY (user_id, session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_holds_amount_check CHECK (amount > 0 AND amount <> 'NaN'),
  CONSTRAINT credit_holds_status_check CHECK (status IN ('active', 'captured', 'released', 'expired')),
  CONSTRAINT credit_holds_resolved_check CHECK ((status = 'active') = (resolved_at IS NULL)),
  CONSTRAINT credit_holds_captured_check CHECK (
    (status = 'captured') = (captured_amount IS NOT NULL)
    AND (captured_amount IS NULL OR captured_amount BETWEEN 0 AND amount)),
  CONSTRAINT credit_holds_idempotency_key_check
    CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255)
);

-- The ledger entry that captures a hold references it within the tenant. (Not the other way
-- round too: Citus distributes no cycle of foreign keys; verify_ledger checks a hold's
-- capture_transaction_id.)
ALTER TABLE keen.credit_transactions
  ADD CONSTRAINT credit_transactions_hold_fkey FOREIGN KEY (user_id, hold_id)
    REFERENCES keen.credit_holds (user_id, id) ON DELETE RESTRICT;

CREATE TABLE keen.recharge_requests (
  id                          uuid          NOT NULL DEFAULT gen_random_uuid(),
  user_id                     uuid          NOT NULL,
  account_id                  uuid          NOT NULL,
  amount                      numeric(12,4) NOT NULL,
  status                      text          NOT NULL DEFAULT 'pending',
  triggered_by_transaction_id uuid          NOT NULL,
  balance_at_request          numeric(12,4) NOT NULL,
  attempts                    integer       NOT NULL DEFAULT 0,
  failure_reason              text,
  purchase_transaction_id     uuid,
  created_at                  timestamptz   NOT NULL DEFAULT now(),
  claimed_at                  timestamptz,
  resolved_at                 timestamptz,
  CONSTRAINT recharge_requests_pkey PRIMARY KEY (user_id, id),
  CONSTRAINT recharge_requests_account_fkey FOREIGN KEY (user_id, account_id)
    REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT recharge_requests_triggered_by_fkey FOREIGN KEY (user_id, triggered_by_transaction_id)
    REFERENCES keen.credit_transactions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT recharge_requests_purchase_fkey FOREIGN KEY (user_id, purchase_transaction_id)
    REFERENCES keen.credit_transactions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT recharge_requests_amount_check CHECK (amount > 0 AND amount <> 'NaN'),
  CONSTRAINT recharge_requests_status_check
    CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
  CONSTRAINT recharge_requests_attempts_check CHECK (attempts >= 0),
  CONSTRAINT recharge_requests_resolved_check
    CHECK ((status IN ('completed', 'failed')) = (resolved_at IS NOT NULL)),
  CONSTRAINT recharge_requests_failure_reason_check CHECK (failure_reason IS NULL OR status = 'failed'),
  -- A completed request names the purchase that credited it (a repeated webhook returns it).
  CONSTRAINT recharge_requests_purchase_check
    CHECK ((status = 'completed') = (purchase_transaction_id IS NOT NULL))
);

-- ===== indexes ===============================================================
-- Idempotency keys are unique per account.
-- A payment intent credits once per tenant, leading with user_id: another tenant can neither
-- probe a payment id nor use it first to block the owner's purchase.
CREATE UNIQUE INDEX credit_transactions_user_id_stripe_payment_intent_id_key
  ON keen.credit_transactions (user_id, stripe_payment_intent_id) WHERE stripe_payment_intent_id IS NOT NULL;
CREATE UNIQUE INDEX credit_transactions_user_id_idempotency_key_key
  ON keen.credit_transactions (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The listing (newest first) reads the unique (user_id, entry_no) key backwards: no index of
-- its own, one B-tree entry less per ledger row (migration 0020).
CREATE INDEX credit_transactions_user_id_session_id_idx ON keen.credit_transactions (user_id, session_id)
  WHERE session_id IS NOT NULL;
-- A hold is captured by one ledger entry at most.
CREATE UNIQUE INDEX credit_transactions_user_id_hold_id_key ON keen.credit_transactions (user_id, hold_id)
  WHERE hold_id IS NOT NULL;
CREATE UNIQUE INDEX credit_holds_user_id_idempotency_key_key
  ON keen.credit_holds (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX credit_holds_user_id_active_idx ON keen.credit_holds (user_id) WHERE status = 'active';
CREATE INDEX credit_holds_active_expires_at_idx ON keen.credit_holds (expires_at) WHERE status = 'active';
CREATE INDEX credit_holds_user_id_session_id_idx ON keen.credit_holds (user_id, session_id)
  WHERE session_id IS NOT NULL;
-- At most one open recharge request per account, so per user.
CREATE UNIQUE INDEX recharge_requests_user_id_open_key
  ON keen.recharge_requests (user_id) WHERE status IN ('pending', 'processing');
CREATE INDEX recharge_requests_pending_created_at_idx ON keen.recharge_requests (created_at)
  WHERE status = 'pending';

-- ===== functions =============================================================
-- How the money is kept (docs/credits.md has the long form): every change of a balance is a
-- ledger row, written by the one function of its movement under the account's row lock
-- together with the account's new figures and the day's statistics. keen_app only reads the
-- credit tables, so those functions (and migrations) are the only writers; verify_ledger()
-- checks every invariant from the rows themselves.

-- Helpers ------------------------------------------------------------------------------------

CREATE FUNCTION keen.validate_credit_amount(p_amount numeric, p_what text DEFAULT 'amount')
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- NaN and ±Infinity first: they would slip through (or break) the comparisons below.
  IF p_amount IS NULL OR p_amount = 'NaN'::numeric
     OR p_amount IN ('Infinity'::numeric, '-Infinity'::numeric)
     OR p_amount <= 0 OR p_amount >= 100000000 OR p_amount <> pg_catalog.round(p_amount, 4) THEN
    RAISE EXCEPTION 'invalid %: % (must be positive, finite, below 100000000, at most 4 decimal places)',
      p_what, coalesce(p_amount::text, 'NULL')
      USING ERRCODE = 'KE004',
            DETAIL = pg_catalog.format('%s = %s', p_what, coalesce(p_amount::text, 'NULL')),
            HINT = 'Round session costs with keen.round_cost() before charging them.';
  END IF;
  RETURN pg_catalog.round(p_amount, 4);
END
$$;

CREATE FUNCTION keen.round_cost(p_cost numeric)
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_cost IS NULL OR p_cost = 'NaN'::numeric OR p_cost IN ('Infinity'::numeric, '-Infinity'::numeric)
     OR p_cost < 0 THEN
    RAISE EXCEPTION 'invalid cost: % (must be zero or positive and finite)', coalesce(p_cost::text, 'NULL')
      USING ERRCODE = 'KE004';
  END IF;
  -- Ceiling to the ledger's 4 places: the platform never receives less than the cost, and
  -- the user never pays more than one unit (0.0001) above it.
  RETURN pg_catalog.ceil(p_cost * 10000) / 10000;
END
$$;

CREATE FUNCTION keen.credit_local_date(p_user_id uuid, p_at timestamptz)
RETURNS date
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_timezone text;
BEGIN
  -- The user's own calendar day of p_at; UTC when the user row is not visible.
  SELECT u.timezone INTO v_timezone FROM keen.users AS u WHERE u.id = p_user_id;
  RETURN (p_at AT TIME ZONE coalesce(v_timezone, 'UTC'))::date;
END
$$;

CREATE FUNCTION keen.in_migration()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  -- A migration acts as keen_owner (SET ROLE) from a login that is not a service login: a
  -- SECURITY DEFINER function called by the service has current_user keen_owner but its
  -- session_user is a keen_app member, so it does not count.
  SELECT current_user = 'keen_owner'
     AND coalesce((SELECT r.rolsuper OR NOT pg_catalog.pg_has_role(r.oid, 'keen_app', 'MEMBER')
                     FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user), false)
$$;

CREATE FUNCTION keen.tg_credit_transactions__append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- keen.in_migration()'s rule, written out: on Citus this trigger runs on a worker's shard,
  -- where no keen function but the trigger functions exists.
  IF current_user = 'keen_owner'
     AND coalesce((SELECT r.rolsuper OR NOT pg_catalog.pg_has_role(r.oid, 'keen_app', 'MEMBER')
                     FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user), false) THEN
    RETURN CASE TG_OP WHEN 'UPDATE' THEN NEW WHEN 'DELETE' THEN OLD END;
  END IF;
  RAISE EXCEPTION 'the credit ledger is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'Correct an entry with a new one (refund or adjustment).';
END
$$;

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
  -- A value, not now() in the statement: Citus refuses a non-IMMUTABLE function in the
  -- DO UPDATE SET of a distributed INSERT.
  v_now timestamptz := pg_catalog.now();
BEGIN
  -- The caller holds the account lock (taken before this row's by every transaction). The
  -- day's row usually exists: add to it; else create it (every figure added is >= 0 but the
  -- signed adjustment, which no CHECK bounds, so INSERT … ON CONFLICT is safe here).
  UPDATE keen.daily_usage_stats AS d
     SET credits_purchased = d.credits_purchased + v_purchased, credits_spent = d.credits_spent + v_spent,
         credits_refunded = d.credits_refunded + v_refunded, credits_adjusted = d.credits_adjusted + v_adjusted,
         updated_at = v_now
   WHERE d.user_id = p_user_id AND d.date_bucket = p_day;
  IF NOT FOUND THEN
    INSERT INTO keen.daily_usage_stats AS d
           (user_id, date_bucket, credits_purchased, credits_spent, credits_refunded, credits_adjusted)
    VALUES (p_user_id, p_day, v_purchased, v_spent, v_refunded, v_adjusted)
    ON CONFLICT (user_id, date_bucket) DO UPDATE
       SET credits_purchased = d.credits_purchased + v_purchased, credits_spent = d.credits_spent + v_spent,
           credits_refunded = d.credits_refunded + v_refunded, credits_adjusted = d.credits_adjusted + v_adjusted,
           updated_at = v_now
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
  -- At most one open request per account, so per user (unique partial index): a second one
  -- is skipped.
  INSERT INTO keen.recharge_requests AS r
         (id, user_id, account_id, amount, triggered_by_transaction_id, balance_at_request)
  VALUES (pg_catalog.gen_random_uuid(), p_user_id, p_account_id, p_amount, p_entry_id, p_balance)
  ON CONFLICT (user_id) WHERE status IN ('pending', 'processing') DO NOTHING
  RETURNING r.id INTO v_request_id;
  IF v_request_id IS NOT NULL THEN
    -- A wake-up for the billing service, naming nobody: it claims its work by query.
    PERFORM pg_catalog.pg_notify('keen_recharge', '');
  END IF;
END
$$;

CREATE FUNCTION keen.deduct_credits(
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
  -- keen.require_user_id() only when there is no tenant (it raises KE010): on the way of
  -- every charge, one PL/pgSQL call with its search_path switch less (migration 0020).
  v_user_id uuid := keen.current_user_id();
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
  IF v_user_id IS NULL THEN
    PERFORM keen.require_user_id();
  END IF;
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
  -- Two IFs: a condition with a subquery runs through the executor even when the session is
  -- NULL; the plain test alone is a simple expression (migration 0020).
  IF p_session_id IS NOT NULL THEN
    IF NOT EXISTS (SELECT FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id AND s.id = p_session_id) THEN
      RAISE EXCEPTION 'agent session % not found', p_session_id USING ERRCODE = 'KE006';
    END IF;
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
  v_purchased numeric;  -- what the entry adds to lifetime_purchased
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
  -- 6. The account follows it (the CASE is computed here: Citus deparses a parameter inside
  -- a simple CASE of a distributed UPDATE wrongly, "operator does not exist: text = boolean").
  v_purchased := CASE v_type WHEN 'purchase' THEN v_amount ELSE 0 END;
  UPDATE keen.credit_accounts AS a
     SET current_balance = v_entry.balance_after, last_entry_no = v_entry.entry_no,
         lifetime_purchased = a.lifetime_purchased + v_purchased,
         updated_at = v_now
   WHERE a.user_id = p_user_id;
  -- 7. The day's statistics.
  PERFORM keen.add_ledger_usage(p_user_id, (v_now AT TIME ZONE coalesce(v_account.timezone, 'UTC'))::date, v_type, v_amount);
  RETURN v_entry;
END
$$;

CREATE FUNCTION keen.add_credits(
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

CREATE FUNCTION keen.hold_credits(
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
  IF p_session_id IS NOT NULL THEN  -- two IFs, as in deduct_credits
    IF NOT EXISTS (SELECT FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id AND s.id = p_session_id) THEN
      RAISE EXCEPTION 'agent session % not found', p_session_id USING ERRCODE = 'KE006';
    END IF;
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

CREATE FUNCTION keen.capture_hold(
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

CREATE FUNCTION keen.release_hold(p_hold_id uuid)
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

CREATE FUNCTION keen.check_credits(p_amount numeric)
RETURNS TABLE (sufficient boolean, current_balance numeric, available_balance numeric,
               required numeric, shortfall numeric)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
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

CREATE FUNCTION keen.credit_balance()
RETURNS TABLE (current_balance numeric, held_amount numeric, available_balance numeric,
               lifetime_purchased numeric, lifetime_spent numeric, spent_today numeric,
               spent_this_month numeric, daily_limit numeric, monthly_limit numeric)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
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

CREATE FUNCTION keen.set_spending_limits(
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

CREATE FUNCTION keen.configure_auto_recharge(
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

-- Operator functions (not granted to keen_app; run by an operator or billing login) --------

CREATE FUNCTION keen.verify_ledger()
RETURNS TABLE (account_id uuid, user_id uuid, invariant text, detail text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  -- all tenants: an operator check of every account, read only; every join and window stays
  -- within one tenant (user_id), so on Citus each tenant's rows are checked on its own shard,
  -- in one snapshot. The local day is keen.credit_local_date's rule, written out (a function
  -- reading users cannot run inside a query on a shard).
  WITH sums AS (
    SELECT a.id, a.user_id, a.current_balance, a.held_amount, a.lifetime_purchased, a.lifetime_spent,
           a.last_entry_no, a.spent_today_date, a.spent_today, a.spent_month_start, a.spent_this_month,
           coalesce(sum(t.amount), 0) AS total,
           coalesce(sum(t.amount) FILTER (WHERE t.transaction_type = 'purchase'), 0) AS purchased,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage'), 0) AS spent,
           coalesce(max(t.entry_no), 0) AS max_entry,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage' AND
             (t.created_at AT TIME ZONE coalesce(u.timezone, 'UTC'))::date = a.spent_today_date), 0) AS spent_day,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage' AND
             pg_catalog.date_trunc('month', (t.created_at AT TIME ZONE coalesce(u.timezone, 'UTC'))::date)::date
               = a.spent_month_start), 0) AS spent_month
      FROM keen.credit_accounts AS a
      LEFT JOIN keen.users AS u ON u.id = a.user_id
      LEFT JOIN keen.credit_transactions AS t ON t.user_id = a.user_id AND t.account_id = a.id
     GROUP BY a.user_id, a.id, u.timezone
  ), chain AS (
    SELECT t.account_id, t.user_id, t.entry_no, t.amount, t.balance_before, t.balance_after,
           coalesce(lag(t.balance_after) OVER w, 0) AS previous_after,
           row_number() OVER w AS position
      FROM keen.credit_transactions AS t
    WINDOW w AS (PARTITION BY t.user_id, t.account_id ORDER BY t.entry_no)
  ), holds AS (
    SELECT a.id, a.user_id, a.held_amount,
           coalesce(sum(h.amount) FILTER (WHERE h.status = 'active'), 0) AS active
      FROM keen.credit_accounts AS a
      LEFT JOIN keen.credit_holds AS h ON h.user_id = a.user_id AND h.account_id = a.id
     GROUP BY a.user_id, a.id
  )
  SELECT s.id, s.user_id, 'balance_equals_ledger_sum',
         pg_catalog.format('balance %s, sum of amounts %s', s.current_balance, s.total)
    FROM sums AS s WHERE s.current_balance <> s.total
  UNION ALL
  SELECT s.id, s.user_id, 'last_entry_no',
         pg_catalog.format('last_entry_no %s, newest entry %s', s.last_entry_no, s.max_entry)
    FROM sums AS s WHERE s.last_entry_no <> s.max_entry
  UNION ALL
  SELECT s.id, s.user_id, 'lifetime_purchased',
         pg_catalog.format('lifetime_purchased %s, purchases %s', s.lifetime_purchased, s.purchased)
    FROM sums AS s WHERE s.lifetime_purchased <> s.purchased
  UNION ALL
  SELECT s.id, s.user_id, 'lifetime_spent',
         pg_catalog.format('lifetime_spent %s, usage %s', s.lifetime_spent, s.spent)
    FROM sums AS s WHERE s.lifetime_spent <> s.spent
  UNION ALL
  SELECT s.id, s.user_id, 'spending_counters',
         pg_catalog.format('spent_today %s (ledger %s), spent_this_month %s (ledger %s)',
                           s.spent_today, s.spent_day, s.spent_this_month, s.spent_month)
    FROM sums AS s WHERE s.spent_today <> s.spent_day OR s.spent_this_month <> s.spent_month
  UNION ALL
  SELECT s.id, s.user_id, 'non_negative_balance', pg_catalog.format('balance %s', s.current_balance)
    FROM sums AS s WHERE s.current_balance < 0
  UNION ALL
  SELECT s.id, s.user_id, 'non_negative_available',
         pg_catalog.format('balance %s, held %s', s.current_balance, s.held_amount)
    FROM sums AS s WHERE s.current_balance - s.held_amount < 0
  UNION ALL
  SELECT c.account_id, c.user_id, 'balance_chain',
         pg_catalog.format('entry %s: before %s (previous after %s), amount %s, after %s, position %s',
                           c.entry_no, c.balance_before, c.previous_after, c.amount, c.balance_after, c.position)
    FROM chain AS c
   WHERE c.balance_before <> c.previous_after OR c.balance_after <> c.balance_before + c.amount
      OR c.entry_no <> c.position
  UNION ALL
  SELECT h.id, h.user_id, 'held_amount_equals_active_holds',
         pg_catalog.format('held_amount %s, active holds %s', h.held_amount, h.active)
    FROM holds AS h WHERE h.held_amount <> h.active
  UNION ALL
  SELECT h.account_id, h.user_id, 'captured_hold_has_entry',
         pg_catalog.format('hold %s captured %s', h.id, h.captured_amount)
    FROM keen.credit_holds AS h
   WHERE h.status = 'captured'
     AND NOT EXISTS (SELECT FROM keen.credit_transactions AS t
                      WHERE t.user_id = h.user_id AND t.id = h.capture_transaction_id AND t.hold_id = h.id
                        AND t.amount = -h.captured_amount)
$$;

CREATE FUNCTION keen.sweep_expired_holds()
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
    -- all tenants: lists the tenants with lapsed holds (read only); each is expired below
    -- under its own account lock, by user_id.
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

CREATE FUNCTION keen.claim_recharge_requests(
  p_limit integer DEFAULT 10,
  p_reclaim_after interval DEFAULT '15 minutes')
RETURNS SETOF keen.recharge_requests
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_since timestamptz := pg_catalog.now() - coalesce(p_reclaim_after, interval '15 minutes');
  v_candidate record;
  v_request keen.recharge_requests;
  v_claimed integer := 0;
BEGIN
  -- SKIP LOCKED: several billing workers claim disjoint requests. A request left in
  -- 'processing' longer than p_reclaim_after (its worker died) is claimed again, so one
  -- crashed worker cannot block an account's auto-recharge for good; completing is
  -- idempotent, so a late first worker and the second one credit once.
  -- Per tenant (Citus-ready): the queue is listed oldest first without a lock, then each
  -- request is claimed by (user_id, id) with FOR UPDATE SKIP LOCKED, its state checked again
  -- under the lock; one being claimed by another worker is skipped, so the listing is read
  -- on (a cursor) until p_limit requests are claimed (NULL: no limit).
  FOR v_candidate IN
    -- all tenants: the billing queue (at most one open request per user), read only; each
    -- request is locked and claimed below by its own user_id.
    SELECT q.user_id, q.id FROM keen.recharge_requests AS q
     WHERE q.status = 'pending' OR (q.status = 'processing' AND q.claimed_at < v_since)
     ORDER BY q.created_at, q.id
  LOOP
    EXIT WHEN v_claimed >= p_limit;
    SELECT r.* INTO v_request FROM keen.recharge_requests AS r
     WHERE r.user_id = v_candidate.user_id AND r.id = v_candidate.id
       AND (r.status = 'pending' OR (r.status = 'processing' AND r.claimed_at < v_since))
       FOR UPDATE SKIP LOCKED;
    CONTINUE WHEN NOT FOUND;
    UPDATE keen.recharge_requests AS r
       SET status = 'processing', claimed_at = pg_catalog.now(), attempts = r.attempts + 1
     WHERE r.user_id = v_candidate.user_id AND r.id = v_candidate.id
    RETURNING r.* INTO v_request;
    v_claimed := v_claimed + 1;
    RETURN NEXT v_request;
  END LOOP;
  RETURN;
END
$$;

CREATE FUNCTION keen.complete_recharge_request(
  p_request_id uuid,
  p_stripe_payment_intent_id text DEFAULT NULL)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
  v_request keen.recharge_requests;
  v_entry keen.credit_transactions;
BEGIN
  -- all tenants: the billing service names a request by its id only; this finds its tenant
  -- (read only), and every statement below names that user_id.
  SELECT r.user_id INTO v_user_id FROM keen.recharge_requests AS r WHERE r.id = p_request_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'recharge request % not found', p_request_id USING ERRCODE = 'KE006';
  END IF;
  -- Account before request: the lock order of every credit function.
  PERFORM FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id FOR UPDATE;
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r
   WHERE r.user_id = v_user_id AND r.id = p_request_id
     FOR UPDATE;
  IF v_request.status = 'completed' THEN
    -- A repeated webhook gets the original purchase.
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = v_user_id AND t.id = v_request.purchase_transaction_id;
    RETURN v_entry;
  ELSIF v_request.status = 'failed' THEN
    RAISE EXCEPTION 'recharge request % already failed', p_request_id USING ERRCODE = 'KE007';
  END IF;
  -- The purchase is an ordinary credit movement, keyed by the request.
  v_entry := keen.post_credit(v_user_id, v_request.amount, 'purchase', 'auto-recharge',
                              'recharge:' || v_request.id::text, p_stripe_payment_intent_id,
                              pg_catalog.jsonb_build_object('recharge_request_id', v_request.id));
  UPDATE keen.recharge_requests AS r
     SET status = 'completed', resolved_at = pg_catalog.now(), purchase_transaction_id = v_entry.id
   WHERE r.user_id = v_user_id AND r.id = p_request_id;
  RETURN v_entry;
END
$$;

CREATE FUNCTION keen.fail_recharge_request(p_request_id uuid, p_reason text DEFAULT NULL)
RETURNS keen.recharge_requests
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
  v_request keen.recharge_requests;
BEGIN
  -- all tenants: the billing service names a request by its id only; this finds its tenant
  -- (read only), and the request is then locked and closed by (user_id, id).
  SELECT r.user_id INTO v_user_id FROM keen.recharge_requests AS r WHERE r.id = p_request_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'recharge request % not found', p_request_id USING ERRCODE = 'KE006';
  END IF;
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r
   WHERE r.user_id = v_user_id AND r.id = p_request_id
     FOR UPDATE;
  IF v_request.status NOT IN ('pending', 'processing') THEN
    RAISE EXCEPTION 'recharge request % is already %', p_request_id, v_request.status USING ERRCODE = 'KE007';
  END IF;
  -- Failing closes the request, so the next deduction below the threshold may open another.
  UPDATE keen.recharge_requests AS r
     SET status = 'failed', failure_reason = coalesce(p_reason, 'unspecified'), resolved_at = pg_catalog.now()
   WHERE r.user_id = v_user_id AND r.id = p_request_id
  RETURNING r.* INTO v_request;
  RETURN v_request;
END
$$;

-- ===== triggers ==============================================================
-- Append-only: row triggers for UPDATE/DELETE, a statement trigger for TRUNCATE (they never
-- fire on the INSERT of a movement).
CREATE TRIGGER _010_append_only BEFORE UPDATE OR DELETE ON keen.credit_transactions
  FOR EACH ROW EXECUTE FUNCTION keen.tg_credit_transactions__append_only();
CREATE TRIGGER _010_append_only_truncate BEFORE TRUNCATE ON keen.credit_transactions
  FOR EACH STATEMENT EXECUTE FUNCTION keen.tg_credit_transactions__append_only();

-- A tenant read by value (migration 0015): one shard on Citus.
CREATE FUNCTION keen.list_credit_transactions(p_limit integer)
RETURNS SETOF keen.credit_transactions
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  -- The tenant by value: on Citus one shard, not every shard filtered by the policy. Newest
  -- first in the ledger's own order: the unique (user_id, entry_no) key read backwards.
  RETURN QUERY
    SELECT t.* FROM keen.credit_transactions AS t
     WHERE t.user_id = v_user_id
     ORDER BY t.entry_no DESC
     LIMIT p_limit;
END
$$;

-- ===== row-level security ====================================================
ALTER TABLE keen.credit_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_accounts FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_transactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_transactions FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_holds FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.recharge_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.recharge_requests FORCE ROW LEVEL SECURITY;
-- Tenants read only their own rows (every write is a SECURITY DEFINER movement); the owner
-- policy serves those functions, the operators and the dashboard refresh.
CREATE POLICY select_own ON keen.credit_accounts FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.credit_accounts FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.credit_transactions FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.credit_transactions FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.credit_holds FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.credit_holds FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.recharge_requests FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.recharge_requests FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
-- Read only: every write is a movement function (SECURITY DEFINER, EXECUTE granted below).
GRANT SELECT ON keen.credit_accounts, keen.credit_transactions, keen.credit_holds, keen.recharge_requests
  TO keen_app;
GRANT EXECUTE ON FUNCTION
  keen.add_credits(numeric, text, text, text, text, jsonb),
  keen.deduct_credits(numeric, uuid, text, text),
  keen.check_credits(numeric),
  keen.credit_balance(),
  keen.hold_credits(uuid, numeric, text, interval),
  keen.capture_hold(uuid, numeric, text),
  keen.release_hold(uuid),
  keen.set_spending_limits(numeric, numeric),
  keen.configure_auto_recharge(boolean, numeric, numeric),
  keen.round_cost(numeric),
  -- Called as the invoker by check_credits and credit_balance (PostgreSQL checks EXECUTE on
  -- every nested call against current_user); each reads only the caller's own rows or none.
  keen.validate_credit_amount(numeric, text),
  keen.credit_local_date(uuid, timestamptz)
TO keen_app;
-- Not granted: the internal helpers the movements call as keen_owner (extend_hold,
-- post_credit, expire_lapsed_holds, add_ledger_usage, request_recharge,
-- refuse_spending_limit), in_migration, and the billing and operator functions.

GRANT EXECUTE ON FUNCTION keen.list_credit_transactions(integer) TO keen_app;

-- ===== comments ==============================================================
COMMENT ON TABLE keen.credit_accounts IS 'A user''s prepaid credit account; its balance is the sum of its ledger.';
COMMENT ON COLUMN keen.credit_accounts.current_balance IS 'Credits on the account; equals the sum of its ledger amounts.';
COMMENT ON COLUMN keen.credit_accounts.held_amount IS 'Credits reserved by active holds; available = current_balance - held_amount.';
COMMENT ON COLUMN keen.credit_accounts.daily_limit IS 'Most credits spendable per day in the user''s time zone; NULL for none.';
COMMENT ON COLUMN keen.credit_accounts.monthly_limit IS 'Most credits spendable per month in the user''s time zone; NULL for none.';
COMMENT ON COLUMN keen.credit_accounts.last_entry_no IS 'entry_no of the account''s latest ledger row.';
COMMENT ON TABLE keen.credit_transactions IS 'The append-only credit ledger: no UPDATE, no DELETE, no TRUNCATE.';
COMMENT ON COLUMN keen.credit_transactions.entry_no IS 'Position in the account''s ledger, without gaps.';
COMMENT ON COLUMN keen.credit_transactions.amount IS 'Signed change of the balance: positive in, negative out.';
COMMENT ON COLUMN keen.credit_transactions.balance_before IS 'The balance before this entry (the previous entry''s balance_after).';
COMMENT ON COLUMN keen.credit_transactions.session_id IS 'The agent session (uuid id) this entry pays for, if any.';
COMMENT ON COLUMN keen.credit_transactions.idempotency_key IS 'Caller''s key: a retry returns this row instead of charging again.';
COMMENT ON TABLE keen.credit_holds IS 'Credits reserved for a running agent; captured, released or expired.';
COMMENT ON TABLE keen.recharge_requests IS 'Transactional outbox of auto-recharges for the billing service.';
COMMENT ON COLUMN keen.credit_accounts.spent_today_date IS 'Local day (users.timezone) that spent_today counts.';
COMMENT ON COLUMN keen.credit_accounts.spent_today IS 'Usage posted on spent_today_date; kept from the ledger by the movements.';
COMMENT ON COLUMN keen.credit_accounts.spent_month_start IS 'First local day of the month that spent_this_month counts.';
COMMENT ON COLUMN keen.credit_accounts.spent_this_month IS 'Usage posted in the month from spent_month_start; derived from the ledger.';
COMMENT ON FUNCTION keen.validate_credit_amount(numeric, text) IS
  'Returns the amount if positive, finite, below 1e8 and at most 4 decimal places; else raises KE004.';
COMMENT ON FUNCTION keen.round_cost(numeric) IS
  'A 6-place session cost as a 4-place ledger amount: rounded up (ceiling), never below the cost, at most 0.0001 above.';
COMMENT ON FUNCTION keen.credit_local_date(uuid, timestamptz) IS 'The user''s local calendar day of a moment (users.timezone).';
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
COMMENT ON FUNCTION keen.in_migration() IS
  'True only for a migration: acting as keen_owner from a login that is not a keen_app member.';
COMMENT ON FUNCTION keen.tg_credit_transactions__append_only() IS 'Refuses UPDATE, DELETE and TRUNCATE of the ledger outside a migration.';
COMMENT ON FUNCTION keen.deduct_credits(numeric, uuid, text, text) IS
  'Charges usage atomically under the account lock: balance, holds, daily/monthly limits (holds count as spending to come), idempotency key.';
COMMENT ON FUNCTION keen.add_credits(numeric, text, text, text, text, jsonb) IS
  'Credits a purchase, refund or adjustment; idempotent by key (or by payment intent without a key).';
COMMENT ON FUNCTION keen.check_credits(numeric) IS 'Whether the available balance (balance minus active holds) covers an amount.';
COMMENT ON FUNCTION keen.credit_balance() IS 'The caller''s balance, holds, lifetime totals, spending today/this month and limits.';
COMMENT ON FUNCTION keen.hold_credits(uuid, numeric, text, interval) IS
  'Reserves credits for a running agent until captured, released or expired (p_expires_in, default 1 hour).';
COMMENT ON FUNCTION keen.capture_hold(uuid, numeric, text) IS
  'Charges at most the held amount (default all of it) and frees the rest, never refused for balance or limits; a retry with the same amount and description returns the original entry, other arguments KE005.';
COMMENT ON FUNCTION keen.release_hold(uuid) IS 'Frees a hold''s credits; a no-op for a released or expired hold, KE007 for a captured one.';
COMMENT ON FUNCTION keen.set_spending_limits(numeric, numeric) IS 'Sets the daily and monthly limits (NULL for none).';
COMMENT ON FUNCTION keen.configure_auto_recharge(boolean, numeric, numeric) IS
  'Turns auto-recharge on or off; threshold and amount keep their values when NULL.';
COMMENT ON FUNCTION keen.verify_ledger() IS 'Operators: one row per violated ledger invariant; empty when healthy.';
COMMENT ON FUNCTION keen.sweep_expired_holds() IS 'Operators: expires lapsed holds, freeing their credits; returns how many.';
COMMENT ON FUNCTION keen.claim_recharge_requests(integer, interval) IS 'Billing service: claims up to p_limit pending recharge requests, and those left processing longer than p_reclaim_after (SKIP LOCKED).';
COMMENT ON FUNCTION keen.complete_recharge_request(uuid, text) IS
  'Billing service: credits the recharge as a purchase and closes the request; repeated calls return the same entry.';
COMMENT ON FUNCTION keen.fail_recharge_request(uuid, text) IS 'Billing service: closes a recharge request as failed.';

COMMENT ON COLUMN keen.credit_accounts.user_id IS 'The tenant owning the account (one account per user).';
COMMENT ON COLUMN keen.credit_accounts.lifetime_purchased IS 'Sum of all purchases, refunds and positive adjustments.';
COMMENT ON COLUMN keen.credit_accounts.lifetime_spent IS 'Sum of all usage and negative adjustments (positive figure).';
COMMENT ON COLUMN keen.credit_accounts.auto_recharge_enabled IS 'Whether a deduction below the threshold queues a recharge request.';
COMMENT ON COLUMN keen.credit_accounts.auto_recharge_threshold IS 'Balance under which a recharge request is queued.';
COMMENT ON COLUMN keen.credit_accounts.auto_recharge_amount IS 'Credits a recharge request asks the billing service to buy.';
COMMENT ON COLUMN keen.credit_accounts.account_status IS 'active, suspended or closed; only active accounts move credits.';
COMMENT ON COLUMN keen.credit_accounts.suspended_reason IS 'Why the account is not active.';
COMMENT ON COLUMN keen.credit_transactions.user_id IS 'The tenant owning the entry.';
COMMENT ON COLUMN keen.credit_transactions.account_id IS 'The credit account the entry belongs to.';
COMMENT ON COLUMN keen.credit_transactions.transaction_type IS 'purchase, usage, refund or adjustment.';
COMMENT ON COLUMN keen.credit_transactions.balance_after IS 'The balance after this entry: balance_before + amount, never negative.';
COMMENT ON COLUMN keen.credit_transactions.claude_cost_usd IS 'Underlying model cost in USD, when known (6 decimals).';
COMMENT ON COLUMN keen.credit_transactions.markup_multiplier IS 'Markup applied to claude_cost_usd, when known.';
COMMENT ON COLUMN keen.credit_transactions.hold_id IS 'The hold this usage entry captured, if any (captured once).';
COMMENT ON COLUMN keen.credit_transactions.description IS 'Human-readable reason of the entry.';
COMMENT ON COLUMN keen.credit_transactions.metadata IS 'Callers details of the entry as JSON.';
COMMENT ON COLUMN keen.credit_transactions.request_fingerprint IS 'Hash of the calls arguments: a retried key with other arguments raises KE005.';
COMMENT ON COLUMN keen.credit_transactions.stripe_payment_intent_id IS 'The payment that bought these credits; unique per tenant, so one payment credits once.';
COMMENT ON COLUMN keen.credit_transactions.created_by_ip IS 'Client address of the request, when known.';
COMMENT ON COLUMN keen.credit_holds.user_id IS 'The tenant owning the hold.';
COMMENT ON COLUMN keen.credit_holds.account_id IS 'The credit account the hold reserves credits on.';
COMMENT ON COLUMN keen.credit_holds.session_id IS 'The agent session (uuid id) the hold is for, if any.';
COMMENT ON COLUMN keen.credit_holds.amount IS 'Credits reserved.';
COMMENT ON COLUMN keen.credit_holds.captured_amount IS 'Credits charged when captured (at most amount); NULL until captured.';
COMMENT ON COLUMN keen.credit_holds.status IS 'active, captured, released or expired; only active holds change.';
COMMENT ON COLUMN keen.credit_holds.idempotency_key IS 'Callers key: a retry returns this hold instead of reserving again.';
COMMENT ON COLUMN keen.credit_holds.request_fingerprint IS 'Hash of the calls arguments: a retried key with other arguments raises KE005.';
COMMENT ON COLUMN keen.credit_holds.expires_at IS 'When an uncaptured hold expires (keen.sweep_expired_holds releases it).';
COMMENT ON COLUMN keen.credit_holds.capture_transaction_id IS 'The ledger entry that captured the hold.';
COMMENT ON COLUMN keen.credit_holds.resolved_at IS 'When the hold left the active state.';
COMMENT ON COLUMN keen.recharge_requests.user_id IS 'The tenant whose account needs a recharge.';
COMMENT ON COLUMN keen.recharge_requests.account_id IS 'The credit account to recharge.';
COMMENT ON COLUMN keen.recharge_requests.amount IS 'Credits to buy (the accounts auto_recharge_amount at the time).';
COMMENT ON COLUMN keen.recharge_requests.status IS 'pending, processing, completed or failed; at most one open per account.';
COMMENT ON COLUMN keen.recharge_requests.triggered_by_transaction_id IS 'The deduction that took the balance under the threshold.';
COMMENT ON COLUMN keen.recharge_requests.balance_at_request IS 'The balance right after that deduction.';
COMMENT ON COLUMN keen.recharge_requests.attempts IS 'How often the billing service claimed the request.';
COMMENT ON COLUMN keen.recharge_requests.failure_reason IS 'Why the billing service failed the request.';
COMMENT ON COLUMN keen.recharge_requests.purchase_transaction_id IS 'The purchase entry that completed the request.';
COMMENT ON COLUMN keen.recharge_requests.claimed_at IS 'When the billing service last claimed the request.';
COMMENT ON COLUMN keen.recharge_requests.resolved_at IS 'When the request was completed or failed.';

COMMENT ON COLUMN keen.credit_accounts.id IS 'Primary key.';
COMMENT ON COLUMN keen.credit_accounts.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN keen.credit_accounts.updated_at IS 'When the row was last updated (set by the function that writes it).';
COMMENT ON COLUMN keen.credit_accounts.next_hold_expiry IS 'Earliest expiry of the active holds (or earlier); NULL when none. Once past, the next movement expires lapsed holds.';
COMMENT ON COLUMN keen.credit_holds.id IS 'Primary key.';
COMMENT ON COLUMN keen.credit_holds.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN keen.credit_transactions.id IS 'Primary key.';
COMMENT ON COLUMN keen.credit_transactions.created_at IS 'When the entry was posted (server time, set by the movement).';
COMMENT ON COLUMN keen.recharge_requests.id IS 'Primary key.';
COMMENT ON COLUMN keen.recharge_requests.created_at IS 'When the row was inserted.';
COMMENT ON FUNCTION keen.list_credit_transactions(integer) IS 'The caller''s ledger, newest first, at most p_limit rows, by the tenant key: one shard on Citus. KE010 without tenant.';

RESET ROLE;
