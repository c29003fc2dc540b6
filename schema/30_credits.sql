-- Prepaid credits: one account per user, an append-only ledger, holds, recharge requests.
SET ROLE keen_owner;

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
  CONSTRAINT credit_accounts_pkey PRIMARY KEY (id),
  CONSTRAINT credit_accounts_user_id_key UNIQUE (user_id),
  CONSTRAINT credit_accounts_user_id_id_key UNIQUE (user_id, id),
  CONSTRAINT credit_accounts_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  -- The figures in one CHECK (every DML statement compiles each CHECK again, per operator:
  -- one merged expression costs less than ten; bench/credits/REPORT.md). Each line is a rule:
  -- LEAST(…) >= 0 is "none negative"; GREATEST(…) < 'NaN' is "none NaN" (numeric accepts
  -- 'NaN', which sorts above every number: it passes `>= 0`, and only NaN is not < 'NaN');
  -- both skip NULLs, so a NULL (unset) limit passes and a set one must be > 0 and not NaN.
  CONSTRAINT credit_accounts_figures_check CHECK (
    LEAST(current_balance, held_amount, lifetime_purchased, lifetime_spent,
          auto_recharge_threshold, spent_today, spent_this_month) >= 0
    AND LEAST(daily_limit, monthly_limit, auto_recharge_amount) > 0
    AND GREATEST(current_balance, held_amount, lifetime_purchased, lifetime_spent, daily_limit,
                 monthly_limit, auto_recharge_threshold, auto_recharge_amount, spent_today,
                 spent_this_month) < 'NaN'
    AND held_amount <= current_balance
    AND last_entry_no >= 0),
  CONSTRAINT credit_accounts_account_status_check
    CHECK (account_status IN ('active', 'suspended', 'closed')),
  CONSTRAINT credit_accounts_suspended_reason_check
    CHECK (suspended_reason IS NULL OR account_status <> 'active')
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
  CONSTRAINT credit_transactions_pkey PRIMARY KEY (id),
  CONSTRAINT credit_transactions_user_id_id_key UNIQUE (user_id, id),
  CONSTRAINT credit_transactions_account_id_entry_no_key UNIQUE (account_id, entry_no),
  -- Per tenant, leading with user_id: another tenant can neither probe a payment id nor
  -- use it first to block the owner's purchase.
  CONSTRAINT credit_transactions_user_id_stripe_payment_intent_id_key UNIQUE (user_id, stripe_payment_intent_id),
  CONSTRAINT credit_transactions_account_fkey FOREIGN KEY (user_id, account_id)
    REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_transactions_session_fkey FOREIGN KEY (user_id, session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_transactions_transaction_type_check
    CHECK (transaction_type IN ('purchase', 'usage', 'refund', 'adjustment')),
  -- The entry's figures in one CHECK (as credit_accounts_figures_check). Credits come in by
  -- purchase and refund and go out by usage; adjustments go either way but are never zero;
  -- no figure is NaN (only NaN is not < 'NaN'); balances never negative and chained.
  CONSTRAINT credit_transactions_figures_check CHECK (
    CASE transaction_type WHEN 'usage' THEN amount < 0
                          WHEN 'adjustment' THEN amount <> 0
                          ELSE amount > 0 END
    AND GREATEST(amount, balance_before, balance_after) < 'NaN'
    AND LEAST(balance_before, balance_after) >= 0
    AND balance_after = balance_before + amount
    AND entry_no > 0),
  CONSTRAINT credit_transactions_idempotency_key_check
    CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255),
  CONSTRAINT credit_transactions_stripe_payment_intent_id_check
    CHECK (stripe_payment_intent_id IS NULL OR length(stripe_payment_intent_id) BETWEEN 1 AND 255)
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
  CONSTRAINT credit_holds_pkey PRIMARY KEY (id),
  CONSTRAINT credit_holds_user_id_id_key UNIQUE (user_id, id),
  CONSTRAINT credit_holds_account_fkey FOREIGN KEY (user_id, account_id)
    REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_holds_session_fkey FOREIGN KEY (user_id, session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_holds_capture_transaction_fkey FOREIGN KEY (user_id, capture_transaction_id)
    REFERENCES keen.credit_transactions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_holds_amount_check CHECK (amount > 0 AND amount <> 'NaN'),
  CONSTRAINT credit_holds_status_check CHECK (status IN ('active', 'captured', 'released', 'expired')),
  CONSTRAINT credit_holds_resolved_check CHECK ((status = 'active') = (resolved_at IS NULL)),
  CONSTRAINT credit_holds_captured_check CHECK (
    (status = 'captured') = (captured_amount IS NOT NULL)
    AND (captured_amount IS NULL OR captured_amount BETWEEN 0 AND amount)),
  CONSTRAINT credit_holds_idempotency_key_check
    CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255)
);

-- The ledger entry that captures a hold references it within the tenant (holds reference
-- their capturing entry too, so this key can only be added once both tables exist).
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
  CONSTRAINT recharge_requests_pkey PRIMARY KEY (id),
  CONSTRAINT recharge_requests_user_id_id_key UNIQUE (user_id, id),
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
CREATE UNIQUE INDEX credit_transactions_account_id_idempotency_key_key
  ON keen.credit_transactions (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX credit_transactions_user_id_created_at_idx
  ON keen.credit_transactions (user_id, created_at DESC, entry_no DESC);
CREATE INDEX credit_transactions_session_id_idx ON keen.credit_transactions (session_id)
  WHERE session_id IS NOT NULL;
-- A hold is captured by one ledger entry at most.
CREATE UNIQUE INDEX credit_transactions_hold_id_key ON keen.credit_transactions (hold_id)
  WHERE hold_id IS NOT NULL;
CREATE UNIQUE INDEX credit_holds_account_id_idempotency_key_key
  ON keen.credit_holds (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX credit_holds_account_id_active_idx ON keen.credit_holds (account_id) WHERE status = 'active';
CREATE INDEX credit_holds_active_expires_at_idx ON keen.credit_holds (expires_at) WHERE status = 'active';
CREATE INDEX credit_holds_session_id_idx ON keen.credit_holds (session_id) WHERE session_id IS NOT NULL;
-- At most one open recharge request per account.
CREATE UNIQUE INDEX recharge_requests_account_id_open_key
  ON keen.recharge_requests (account_id) WHERE status IN ('pending', 'processing');
CREATE INDEX recharge_requests_pending_created_at_idx ON keen.recharge_requests (created_at)
  WHERE status = 'pending';

-- ===== functions =============================================================
-- How the money is kept (docs/credits.md has the long form): every change of a balance is a
-- ledger row. The ledger's own triggers lock the account, check balance, limits and holds,
-- number the entry and move the balance; a guard on credit_accounts accepts a change of the
-- money columns only when it follows from the newest ledger row (or, for held_amount, from
-- the active holds). So the invariants hold whoever writes, not only when these functions do.

-- Helpers (granted to keen_app: they only read or lock the caller's own rows) --------------

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

-- Small helpers on the hot path are PL/pgSQL, not SQL: a SQL function that cannot be inlined
-- (SET search_path prevents it) is planned again on every call; PL/pgSQL keeps its plans.
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

CREATE FUNCTION keen.lock_credit_account(p_user_id uuid)
RETURNS keen.credit_accounts
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_account keen.credit_accounts;
BEGIN
  -- Every credit function starts here: the account row lock serializes all of its money.
  SELECT a.* INTO v_account FROM keen.credit_accounts AS a WHERE a.user_id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', p_user_id
      USING ERRCODE = 'KE006';
  END IF;
  -- Holds past their expiry stop reserving credits now, not only when the sweeper runs.
  IF v_account.held_amount > 0 THEN
    UPDATE keen.credit_holds AS h SET status = 'expired'
     WHERE h.user_id = p_user_id AND h.account_id = v_account.id AND h.status = 'active'
       AND h.expires_at <= pg_catalog.now();
    IF FOUND THEN
      SELECT a.* INTO v_account FROM keen.credit_accounts AS a WHERE a.user_id = p_user_id AND a.id = v_account.id;
    END IF;
  END IF;
  RETURN v_account;
END
$$;

CREATE FUNCTION keen.credit_fingerprint(p_operation text, p_arguments jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN pg_catalog.md5(p_operation || ':' || p_arguments::text);
END
$$;

CREATE FUNCTION keen.idempotent_id(p_account_id uuid, p_kind text, p_idempotency_key text)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Derived from the key, so a retry can never mint a second row; random without a key.
  IF p_idempotency_key IS NULL THEN
    RETURN pg_catalog.gen_random_uuid();
  END IF;
  RETURN pg_catalog.md5(p_account_id::text || ':' || p_kind || ':' || p_idempotency_key)::uuid;
END
$$;

CREATE FUNCTION keen.check_idempotency_key(p_idempotency_key text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_idempotency_key IS NOT NULL AND pg_catalog.length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION 'invalid idempotency key: length % (must be 1 to 255 characters)',
      pg_catalog.length(p_idempotency_key)
      USING ERRCODE = 'KE013';
  END IF;
END
$$;

CREATE FUNCTION keen.find_idempotent_entry(p_account_id uuid, p_idempotency_key text, p_fingerprint text)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_entry keen.credit_transactions;
BEGIN
  IF p_idempotency_key IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM keen.check_idempotency_key(p_idempotency_key);
  SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
   WHERE t.user_id = v_user_id AND t.account_id = p_account_id
     AND t.idempotency_key = p_idempotency_key;
  IF FOUND AND v_entry.request_fingerprint IS DISTINCT FROM p_fingerprint THEN
    RAISE EXCEPTION 'idempotency key % was used with different arguments', keen.text_prefix(p_idempotency_key)
      USING ERRCODE = 'KE005',
            DETAIL = pg_catalog.format('original entry %s (%s %s)', v_entry.id, v_entry.transaction_type, v_entry.amount),
            HINT = 'Use a new key for a new operation.';
  END IF;
  RETURN v_entry;
END
$$;

CREATE FUNCTION keen.require_agent_session(p_session_id uuid)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  -- Another tenant's session is "not found" (named by value: the SECURITY DEFINER callers
  -- read through the owner's policy, which sees every row).
  IF p_session_id IS NOT NULL
     AND NOT EXISTS (SELECT FROM keen.agent_sessions AS s
                      WHERE s.user_id = v_user_id AND s.id = p_session_id) THEN
    RAISE EXCEPTION 'agent session % not found', p_session_id USING ERRCODE = 'KE006';
  END IF;
END
$$;

CREATE FUNCTION keen.check_spending_limits(p_account keen.credit_accounts, p_amount numeric)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_today date;
  v_day numeric;
  v_month numeric;
BEGIN
  IF p_account.daily_limit IS NULL AND p_account.monthly_limit IS NULL THEN
    RETURN;
  END IF;
  -- The counters only shrink at a new local day or month (to 0), so when even the counted
  -- figures leave room under both limits, so do the real ones: no time zone lookup needed.
  IF p_account.spent_today + p_account.held_amount + p_amount <= coalesce(p_account.daily_limit, 'Infinity')
     AND p_account.spent_this_month + p_account.held_amount + p_amount
         <= coalesce(p_account.monthly_limit, 'Infinity') THEN
    RETURN;
  END IF;
  v_today := keen.credit_local_date(p_account.user_id, pg_catalog.now());
  -- Spent in the window so far, plus every active hold (reserved spending), plus this amount.
  v_day := CASE WHEN p_account.spent_today_date = v_today THEN p_account.spent_today ELSE 0 END
           + p_account.held_amount + p_amount;
  v_month := CASE WHEN p_account.spent_month_start = pg_catalog.date_trunc('month', v_today)::date
                  THEN p_account.spent_this_month ELSE 0 END
             + p_account.held_amount + p_amount;
  IF v_day > p_account.daily_limit THEN
    RAISE EXCEPTION 'daily spending limit exceeded: limit %, would reach %', p_account.daily_limit, v_day
      USING ERRCODE = 'KE002',
            DETAIL = pg_catalog.format('local day %s, held %s, requested %s', v_today, p_account.held_amount, p_amount);
  END IF;
  IF v_month > p_account.monthly_limit THEN
    RAISE EXCEPTION 'monthly spending limit exceeded: limit %, would reach %', p_account.monthly_limit, v_month
      USING ERRCODE = 'KE003',
            DETAIL = pg_catalog.format('local month from %s, held %s, requested %s',
                                       pg_catalog.date_trunc('month', v_today)::date, p_account.held_amount, p_amount);
  END IF;
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

-- Trigger functions ------------------------------------------------------------------------

CREATE FUNCTION keen.tg_credit_transactions__post()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_account keen.credit_accounts;
  v_hold keen.credit_holds;
  v_held_after numeric;
BEGIN
  -- Lock the account (already locked by the credit functions; a direct INSERT gets it here).
  SELECT a.* INTO v_account FROM keen.credit_accounts AS a
   WHERE a.user_id = NEW.user_id AND a.id = coalesce(NEW.account_id, a.id)
   FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account % not found for user %', NEW.account_id, NEW.user_id USING ERRCODE = 'KE006';
  END IF;
  IF (NEW.amount < 0 AND v_account.account_status <> 'active')
     OR (NEW.amount > 0 AND v_account.account_status = 'closed') THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status
      USING ERRCODE = 'KE012', DETAIL = coalesce(v_account.suspended_reason, '');
  END IF;
  NEW.account_id := v_account.id;
  -- Server time, never the caller's: the spending windows are counted from it.
  NEW.created_at := pg_catalog.now();
  v_held_after := v_account.held_amount;
  IF NEW.hold_id IS NOT NULL THEN
    IF NEW.transaction_type <> 'usage' THEN
      RAISE EXCEPTION 'only usage entries capture a hold, not %', NEW.transaction_type USING ERRCODE = 'KE013';
    END IF;
    SELECT h.* INTO v_hold FROM keen.credit_holds AS h
     WHERE h.user_id = NEW.user_id AND h.id = NEW.hold_id AND h.account_id = v_account.id FOR UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'hold % not found', NEW.hold_id USING ERRCODE = 'KE006';
    END IF;
    IF v_hold.status <> 'active' OR v_hold.expires_at <= pg_catalog.now() THEN
      RAISE EXCEPTION 'hold % cannot be captured: it is %', v_hold.id,
        CASE WHEN v_hold.status = 'active' THEN 'expired' ELSE v_hold.status END
        USING ERRCODE = 'KE007', HINT = 'Charge with keen.deduct_credits() instead.';
    END IF;
    IF -NEW.amount > v_hold.amount THEN
      RAISE EXCEPTION 'invalid amount: capture % exceeds hold %', -NEW.amount, v_hold.amount
        USING ERRCODE = 'KE004', HINT = 'Capture at most the held amount; deduct the rest with keen.deduct_credits().';
    END IF;
    NEW.session_id := coalesce(NEW.session_id, v_hold.session_id);
    v_held_after := v_held_after - v_hold.amount;
  END IF;
  NEW.entry_no := v_account.last_entry_no + 1;
  NEW.balance_before := v_account.current_balance;
  NEW.balance_after := v_account.current_balance + NEW.amount;
  -- Available = balance minus the other active holds (a capture frees its own hold).
  IF NEW.amount < 0 AND NEW.balance_after < v_held_after THEN
    RAISE EXCEPTION 'insufficient credits: required %, available %', -NEW.amount, v_account.current_balance - v_held_after
      USING ERRCODE = 'KE001',
            DETAIL = pg_catalog.format('balance %s, held %s', v_account.current_balance, v_held_after),
            HINT = 'Add credits or release holds.';
  END IF;
  -- A capture was counted against the limits when its hold was placed.
  IF NEW.transaction_type = 'usage' AND NEW.hold_id IS NULL THEN
    PERFORM keen.check_spending_limits(v_account, -NEW.amount);
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION keen.tg_credit_transactions__apply()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_enabled boolean;
  v_threshold numeric;
  v_recharge numeric;
  v_request_id uuid;
BEGIN
  -- The hold first: freeing it before the balance drops keeps held_amount <= balance.
  IF NEW.hold_id IS NOT NULL THEN
    UPDATE keen.credit_holds AS h
       SET status = 'captured', captured_amount = -NEW.amount, capture_transaction_id = NEW.id
     WHERE h.user_id = NEW.user_id AND h.id = NEW.hold_id;
  END IF;
  -- The guard trigger on credit_accounts checks this against the entry and derives the
  -- lifetime totals and spending counters from it.
  UPDATE keen.credit_accounts AS a
     SET current_balance = NEW.balance_after, last_entry_no = NEW.entry_no
   WHERE a.user_id = NEW.user_id AND a.id = NEW.account_id
  RETURNING a.auto_recharge_enabled, a.auto_recharge_threshold, a.auto_recharge_amount
       INTO v_enabled, v_threshold, v_recharge;
  -- Auto-recharge outbox: one open request per account (unique partial index), its id
  -- derived from this entry.
  IF NEW.transaction_type = 'usage' AND v_enabled AND NEW.balance_after < v_threshold THEN
    INSERT INTO keen.recharge_requests AS r
           (id, user_id, account_id, amount, triggered_by_transaction_id, balance_at_request)
    VALUES (pg_catalog.md5(NEW.id::text || ':recharge')::uuid, NEW.user_id, NEW.account_id,
            v_recharge, NEW.id, NEW.balance_after)
    ON CONFLICT (account_id) WHERE status IN ('pending', 'processing') DO NOTHING
    RETURNING r.id INTO v_request_id;
    IF v_request_id IS NOT NULL THEN
      -- A wake-up for the billing workers, naming nothing: they claim pending requests.
      PERFORM pg_catalog.pg_notify('keen_recharge', '');
    END IF;
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION keen.tg_credit_transactions__append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF keen.in_migration() THEN
    RETURN CASE TG_OP WHEN 'UPDATE' THEN NEW WHEN 'DELETE' THEN OLD END;
  END IF;
  RAISE EXCEPTION 'the credit ledger is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'Correct an entry with a new one (refund or adjustment).';
END
$$;

CREATE FUNCTION keen.tg_credit_accounts__guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_entry record;  -- the ledger row and the user's timezone
  v_date date;
  v_month date;
  v_held numeric;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF (NEW.current_balance, NEW.held_amount, NEW.lifetime_purchased, NEW.lifetime_spent,
        NEW.last_entry_no, NEW.spent_today, NEW.spent_this_month) <> (0, 0, 0, 0, 0, 0, 0) THEN
      RAISE EXCEPTION 'a credit account opens empty: credits arrive through the ledger'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.id <> OLD.id OR NEW.user_id <> OLD.user_id THEN
    RAISE EXCEPTION 'a credit account''s id and user_id never change' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.account_status, NEW.suspended_reason) IS DISTINCT FROM (OLD.account_status, OLD.suspended_reason)
     AND NOT pg_catalog.pg_has_role(current_user, 'keen_owner', 'MEMBER') THEN
    RAISE EXCEPTION 'only operators change a credit account''s status' USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- Derived columns are never written directly; they are computed below.
  IF (NEW.lifetime_purchased, NEW.lifetime_spent, NEW.spent_today_date, NEW.spent_today,
      NEW.spent_month_start, NEW.spent_this_month)
     IS DISTINCT FROM (OLD.lifetime_purchased, OLD.lifetime_spent, OLD.spent_today_date, OLD.spent_today,
                       OLD.spent_month_start, OLD.spent_this_month) THEN
    RAISE EXCEPTION 'lifetime totals and spending counters are derived from the ledger'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.last_entry_no <> OLD.last_entry_no OR NEW.current_balance <> OLD.current_balance THEN
    -- A balance moves only to the balance_after of the next ledger entry, which must exist.
    -- With the user's time zone in the same statement (one statement less per entry).
    SELECT t.*, u.timezone INTO v_entry
      FROM keen.credit_transactions AS t LEFT JOIN keen.users AS u ON u.id = OLD.user_id
     WHERE t.user_id = OLD.user_id AND t.account_id = OLD.id AND t.entry_no = NEW.last_entry_no;
    IF NOT FOUND OR NEW.last_entry_no <> OLD.last_entry_no + 1
       OR v_entry.balance_before <> OLD.current_balance OR v_entry.balance_after <> NEW.current_balance THEN
      RAISE EXCEPTION 'credit account % balance changes only through a ledger entry', OLD.id
        USING ERRCODE = 'insufficient_privilege', HINT = 'Use keen.add_credits() or keen.deduct_credits().';
    END IF;
    IF v_entry.transaction_type = 'purchase' THEN
      NEW.lifetime_purchased := OLD.lifetime_purchased + v_entry.amount;
    ELSIF v_entry.transaction_type = 'usage' THEN
      NEW.lifetime_spent := OLD.lifetime_spent - v_entry.amount;
      -- As keen.credit_local_date: the user's day, UTC when the user row is not visible.
      v_date := (v_entry.created_at AT TIME ZONE coalesce(v_entry.timezone, 'UTC'))::date;
      v_month := pg_catalog.date_trunc('month', v_date)::date;
      IF OLD.spent_today_date = v_date THEN
        NEW.spent_today := OLD.spent_today - v_entry.amount;
      ELSIF OLD.spent_today_date IS NULL OR OLD.spent_today_date < v_date THEN
        NEW.spent_today_date := v_date;
        NEW.spent_today := -v_entry.amount;
      END IF;
      IF OLD.spent_month_start = v_month THEN
        NEW.spent_this_month := OLD.spent_this_month - v_entry.amount;
      ELSIF OLD.spent_month_start IS NULL OR OLD.spent_month_start < v_month THEN
        NEW.spent_month_start := v_month;
        NEW.spent_this_month := -v_entry.amount;
      END IF;
    END IF;
  END IF;
  IF NEW.held_amount <> OLD.held_amount THEN
    SELECT coalesce(sum(h.amount), 0) INTO v_held FROM keen.credit_holds AS h
     WHERE h.user_id = OLD.user_id AND h.account_id = OLD.id AND h.status = 'active';
    IF v_held <> NEW.held_amount THEN
      RAISE EXCEPTION 'credit account % held_amount must equal its active holds (%)', OLD.id, v_held
        USING ERRCODE = 'insufficient_privilege';
    END IF;
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION keen.tg_credit_holds__reserve()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_account keen.credit_accounts;
BEGIN
  SELECT a.* INTO v_account FROM keen.credit_accounts AS a
   WHERE a.user_id = NEW.user_id AND a.id = coalesce(NEW.account_id, a.id)
   FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account % not found for user %', NEW.account_id, NEW.user_id USING ERRCODE = 'KE006';
  END IF;
  IF v_account.account_status <> 'active' THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status USING ERRCODE = 'KE012';
  END IF;
  PERFORM keen.validate_credit_amount(NEW.amount);
  NEW.account_id := v_account.id;
  NEW.status := 'active';
  NEW.captured_amount := NULL;
  NEW.capture_transaction_id := NULL;
  NEW.resolved_at := NULL;
  NEW.created_at := pg_catalog.now();
  IF NEW.expires_at <= NEW.created_at THEN
    RAISE EXCEPTION 'invalid hold expiry: % is not in the future', NEW.expires_at USING ERRCODE = 'KE013';
  END IF;
  IF NEW.amount > v_account.current_balance - v_account.held_amount THEN
    RAISE EXCEPTION 'insufficient credits: required %, available %', NEW.amount,
      v_account.current_balance - v_account.held_amount
      USING ERRCODE = 'KE001',
            DETAIL = pg_catalog.format('balance %s, held %s', v_account.current_balance, v_account.held_amount);
  END IF;
  PERFORM keen.check_spending_limits(v_account, NEW.amount);
  RETURN NEW;
END
$$;

CREATE FUNCTION keen.tg_credit_holds__guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (NEW.id, NEW.user_id, NEW.account_id, NEW.session_id, NEW.amount, NEW.idempotency_key,
      NEW.request_fingerprint, NEW.expires_at, NEW.created_at)
     IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.account_id, OLD.session_id, OLD.amount, OLD.idempotency_key,
                       OLD.request_fingerprint, OLD.expires_at, OLD.created_at) THEN
    RAISE EXCEPTION 'a hold''s terms never change' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.status = OLD.status AND NEW IS NOT DISTINCT FROM OLD THEN
    RETURN NEW;
  END IF;
  IF OLD.status <> 'active' THEN
    RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.status USING ERRCODE = 'KE007';
  END IF;
  IF NEW.status = 'captured' THEN
    -- Captured only by its ledger entry (inserted just before, by the ledger trigger).
    IF NOT EXISTS (SELECT FROM keen.credit_transactions AS t
                    WHERE t.user_id = NEW.user_id AND t.id = NEW.capture_transaction_id AND t.hold_id = NEW.id
                      AND t.amount = -NEW.captured_amount) THEN
      RAISE EXCEPTION 'hold % is captured only by a ledger entry', OLD.id
        USING ERRCODE = 'insufficient_privilege', HINT = 'Use keen.capture_hold().';
    END IF;
  ELSIF NEW.status = 'expired' AND OLD.expires_at > pg_catalog.now() THEN
    RAISE EXCEPTION 'hold % expires only at %', OLD.id, OLD.expires_at USING ERRCODE = 'KE007';
  ELSIF NEW.status NOT IN ('released', 'expired') THEN
    RAISE EXCEPTION 'hold % cannot become %', OLD.id, NEW.status USING ERRCODE = 'KE007';
  ELSIF NEW.captured_amount IS NOT NULL OR NEW.capture_transaction_id IS NOT NULL THEN
    RAISE EXCEPTION 'a % hold has no capture', NEW.status USING ERRCODE = 'insufficient_privilege';
  END IF;
  NEW.resolved_at := pg_catalog.now();
  RETURN NEW;
END
$$;

CREATE FUNCTION keen.tg_credit_holds__apply()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Recomputed rather than incremented: right even when one statement changes many holds.
  UPDATE keen.credit_accounts AS a
     SET held_amount = (SELECT coalesce(sum(h.amount), 0) FROM keen.credit_holds AS h
                         WHERE h.user_id = NEW.user_id AND h.account_id = NEW.account_id AND h.status = 'active')
   WHERE a.user_id = NEW.user_id AND a.id = NEW.account_id;
  RETURN NULL;
END
$$;

-- Tenant API -------------------------------------------------------------------------------

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
  v_user_id uuid := keen.require_user_id();
  v_amount numeric := keen.validate_credit_amount(p_amount);
  v_account keen.credit_accounts;
  v_fingerprint text;
  v_entry keen.credit_transactions;
BEGIN
  -- Before the lock: all of one account's deductions queue on it, so it is held no longer
  -- than it must be.
  PERFORM keen.check_text(p_description, 'description', 1000);
  v_fingerprint := keen.credit_fingerprint('deduct', pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'session_id', p_session_id, 'description', p_description));
  v_account := keen.lock_credit_account(v_user_id);
  -- Looked up under the account lock: a concurrent retry waits and then finds the row.
  IF p_idempotency_key IS NOT NULL THEN
    v_entry := keen.find_idempotent_entry(v_account.id, p_idempotency_key, v_fingerprint);
    IF v_entry.id IS NOT NULL THEN
      RETURN v_entry;
    END IF;
  END IF;
  IF p_session_id IS NOT NULL THEN
    PERFORM keen.require_agent_session(p_session_id);
  END IF;
  -- Balance, holds and limits are checked by the ledger's insert trigger, under the same lock.
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, transaction_type, amount, session_id, description,
          idempotency_key, request_fingerprint)
  VALUES (keen.idempotent_id(v_account.id, 'entry', p_idempotency_key), v_user_id, v_account.id,
          'usage', -v_amount, p_session_id, coalesce(p_description, 'usage'),
          p_idempotency_key, v_fingerprint)
  RETURNING t.* INTO v_entry;
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
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_amount numeric := keen.validate_credit_amount(p_amount);
  v_account keen.credit_accounts;
  v_fingerprint text;
  v_entry keen.credit_transactions;
  -- NULL means the default, as for every optional argument.
  v_type text := coalesce(p_transaction_type, 'purchase');
BEGIN
  IF v_type NOT IN ('purchase', 'refund', 'adjustment') THEN
    RAISE EXCEPTION 'invalid transaction type for add_credits: %', keen.text_prefix(v_type)
      USING ERRCODE = 'KE013', HINT = 'One of purchase, refund, adjustment.';
  END IF;
  PERFORM keen.check_text(p_description, 'description', 1000);
  PERFORM keen.check_text(p_stripe_payment_intent_id, 'payment intent id', 255);
  PERFORM keen.check_jsonb(p_metadata, 'metadata', 16384);
  v_account := keen.lock_credit_account(v_user_id);
  v_fingerprint := keen.credit_fingerprint('add', pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'transaction_type', v_type,
    'description', p_description, 'stripe_payment_intent_id', p_stripe_payment_intent_id,
    'metadata', p_metadata));
  v_entry := keen.find_idempotent_entry(v_account.id, p_idempotency_key, v_fingerprint);
  -- A payment intent is credited once per tenant (a retry with the same arguments gets the
  -- original entry; anything else is KE005, never a raw unique violation). Looked up by
  -- value under the account lock, so a concurrent retry waits and then finds the row.
  IF v_entry.id IS NULL AND p_stripe_payment_intent_id IS NOT NULL THEN
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = v_user_id AND t.stripe_payment_intent_id = p_stripe_payment_intent_id;
    IF FOUND AND (v_entry.request_fingerprint IS DISTINCT FROM v_fingerprint
                  OR v_entry.idempotency_key IS DISTINCT FROM p_idempotency_key) THEN
      RAISE EXCEPTION 'payment intent % was credited with different arguments', keen.text_prefix(p_stripe_payment_intent_id)
        USING ERRCODE = 'KE005', HINT = 'A payment intent credits once: retry with the same arguments and key.';
    END IF;
  END IF;
  IF v_entry.id IS NOT NULL THEN
    RETURN v_entry;
  END IF;
  -- The balance column holds less than 10^8 (and the lifetime totals less than 10^10).
  IF v_account.current_balance + v_amount >= 100000000
     OR (v_type = 'purchase' AND v_account.lifetime_purchased + v_amount >= 10000000000) THEN
    RAISE EXCEPTION 'invalid amount: % would take the balance % past its ceiling 99999999.9999', v_amount,
        v_account.current_balance
      USING ERRCODE = 'KE004';
  END IF;
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, transaction_type, amount, description, metadata, idempotency_key,
          request_fingerprint, stripe_payment_intent_id)
  VALUES (keen.idempotent_id(v_account.id, 'entry', p_idempotency_key), v_user_id, v_account.id,
          v_type, v_amount, coalesce(p_description, v_type),
          coalesce(p_metadata, '{}'::jsonb), p_idempotency_key, v_fingerprint, p_stripe_payment_intent_id)
  RETURNING t.* INTO v_entry;
  RETURN v_entry;
END
$$;

CREATE FUNCTION keen.check_credits(p_amount numeric)
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
                               WHERE h.account_id = a.id AND h.status = 'active'
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
                        WHERE h.account_id = a.id AND h.status = 'active'
                          AND h.expires_at > pg_catalog.now()) AS v
   WHERE a.user_id = v_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', v_user_id USING ERRCODE = 'KE006';
  END IF;
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
  v_amount numeric := keen.validate_credit_amount(p_amount);
  v_account keen.credit_accounts;
  v_fingerprint text;
  v_hold keen.credit_holds;
  v_expires_in interval := coalesce(p_expires_in, interval '1 hour');
BEGIN
  IF v_expires_in <= interval '0' OR v_expires_in > interval '7 days' THEN
    RAISE EXCEPTION 'invalid hold expiry: % (must be above 0 and at most 7 days)', v_expires_in
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_idempotency_key(p_idempotency_key);
  v_account := keen.lock_credit_account(v_user_id);
  v_fingerprint := keen.credit_fingerprint('hold', pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'session_id', p_session_id, 'expires_in', v_expires_in));
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
  IF p_session_id IS NOT NULL THEN
    PERFORM keen.require_agent_session(p_session_id);
  END IF;
  -- Balance and limits are checked by the holds' insert trigger, under the same lock.
  INSERT INTO keen.credit_holds AS h
         (id, user_id, account_id, session_id, amount, idempotency_key, request_fingerprint, expires_at)
  VALUES (keen.idempotent_id(v_account.id, 'hold', p_idempotency_key), v_user_id, v_account.id,
          p_session_id, v_amount, p_idempotency_key, v_fingerprint, pg_catalog.now() + v_expires_in)
  RETURNING h.* INTO v_hold;
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
  v_account keen.credit_accounts;
  v_hold keen.credit_holds;
  v_entry keen.credit_transactions;
BEGIN
  IF p_amount IS NOT NULL THEN
    PERFORM keen.validate_credit_amount(p_amount);
  END IF;
  PERFORM keen.check_text(p_description, 'description', 1000);
  v_account := keen.lock_credit_account(v_user_id);
  SELECT h.* INTO v_hold FROM keen.credit_holds AS h
   WHERE h.user_id = v_user_id AND h.id = p_hold_id AND h.account_id = v_account.id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'KE006';
  END IF;
  -- State, expiry and amount (at most the hold) are checked by the ledger's insert trigger;
  -- the entry id is derived from the hold, so a hold can never be captured twice.
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, transaction_type, amount, session_id, hold_id, description)
  VALUES (pg_catalog.md5(v_hold.id::text || ':capture')::uuid, v_user_id, v_account.id, 'usage',
          -coalesce(pg_catalog.round(p_amount, 4), v_hold.amount), v_hold.session_id, v_hold.id,
          coalesce(p_description, 'hold capture'))
  RETURNING t.* INTO v_entry;
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
  v_account keen.credit_accounts;
  v_hold keen.credit_holds;
BEGIN
  v_account := keen.lock_credit_account(v_user_id);
  SELECT h.* INTO v_hold FROM keen.credit_holds AS h
   WHERE h.user_id = v_user_id AND h.id = p_hold_id AND h.account_id = v_account.id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'KE006';
  END IF;
  IF v_hold.status = 'captured' THEN
    RAISE EXCEPTION 'hold % is already captured', p_hold_id USING ERRCODE = 'KE007';
  END IF;
  -- Releasing a released or expired hold is a no-op: its credits are free already.
  IF v_hold.status = 'active' THEN
    UPDATE keen.credit_holds AS h SET status = 'released'
     WHERE h.user_id = v_user_id AND h.id = p_hold_id RETURNING h.* INTO v_hold;
  END IF;
  RETURN v_hold;
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
  v_account := keen.lock_credit_account(v_user_id);
  UPDATE keen.credit_accounts AS a SET daily_limit = p_daily_limit, monthly_limit = p_monthly_limit
   WHERE a.user_id = v_user_id AND a.id = v_account.id RETURNING a.* INTO v_account;
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
  v_account := keen.lock_credit_account(v_user_id);
  UPDATE keen.credit_accounts AS a
     SET auto_recharge_enabled = p_enabled,
         auto_recharge_threshold = coalesce(p_threshold, a.auto_recharge_threshold),
         auto_recharge_amount = coalesce(p_amount, a.auto_recharge_amount)
   WHERE a.user_id = v_user_id AND a.id = v_account.id RETURNING a.* INTO v_account;
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
  WITH sums AS (
    SELECT a.id, a.user_id, a.current_balance, a.held_amount, a.lifetime_purchased, a.lifetime_spent,
           a.last_entry_no, a.spent_today_date, a.spent_today, a.spent_month_start, a.spent_this_month,
           coalesce(sum(t.amount), 0) AS total,
           coalesce(sum(t.amount) FILTER (WHERE t.transaction_type = 'purchase'), 0) AS purchased,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage'), 0) AS spent,
           coalesce(max(t.entry_no), 0) AS max_entry,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage' AND
             keen.credit_local_date(a.user_id, t.created_at) = a.spent_today_date), 0) AS spent_day,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage' AND
             pg_catalog.date_trunc('month', keen.credit_local_date(a.user_id, t.created_at))::date
               = a.spent_month_start), 0) AS spent_month
      FROM keen.credit_accounts AS a
      LEFT JOIN keen.credit_transactions AS t ON t.account_id = a.id
     GROUP BY a.id
  ), chain AS (
    SELECT t.account_id, t.user_id, t.entry_no, t.amount, t.balance_before, t.balance_after,
           coalesce(lag(t.balance_after) OVER w, 0) AS previous_after,
           row_number() OVER w AS position
      FROM keen.credit_transactions AS t
    WINDOW w AS (PARTITION BY t.account_id ORDER BY t.entry_no)
  ), holds AS (
    SELECT a.id, a.user_id, a.held_amount,
           coalesce(sum(h.amount) FILTER (WHERE h.status = 'active'), 0) AS active
      FROM keen.credit_accounts AS a
      LEFT JOIN keen.credit_holds AS h ON h.account_id = a.id
     GROUP BY a.id
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
                      WHERE t.id = h.capture_transaction_id AND t.hold_id = h.id
                        AND t.amount = -h.captured_amount)
$$;

CREATE FUNCTION keen.sweep_expired_holds()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_count integer;
BEGIN
  -- Accounts first, in id order, as every credit function does: no deadlock with captures.
  PERFORM FROM keen.credit_accounts AS a
   WHERE a.id IN (SELECT h.account_id FROM keen.credit_holds AS h
                   WHERE h.status = 'active' AND h.expires_at <= pg_catalog.now())
   ORDER BY a.id FOR UPDATE OF a;
  UPDATE keen.credit_holds AS h SET status = 'expired'
   WHERE h.status = 'active' AND h.expires_at <= pg_catalog.now();
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END
$$;

CREATE FUNCTION keen.claim_recharge_requests(
  p_limit integer DEFAULT 10,
  p_reclaim_after interval DEFAULT '15 minutes')
RETURNS SETOF keen.recharge_requests
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  -- SKIP LOCKED: several billing workers claim disjoint requests. A request left in
  -- 'processing' longer than p_reclaim_after (its worker died) is claimed again, so one
  -- crashed worker cannot block an account's auto-recharge for good; completing is
  -- idempotent, so a late first worker and the second one credit once.
  UPDATE keen.recharge_requests AS r
     SET status = 'processing', claimed_at = pg_catalog.now(), attempts = r.attempts + 1
   WHERE r.id IN (SELECT q.id FROM keen.recharge_requests AS q
                   WHERE q.status = 'pending'
                      OR (q.status = 'processing'
                          AND q.claimed_at < pg_catalog.now() - coalesce(p_reclaim_after, interval '15 minutes'))
                   ORDER BY q.created_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
  RETURNING r.*
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
  v_request keen.recharge_requests;
  v_entry keen.credit_transactions;
BEGIN
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r WHERE r.id = p_request_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'recharge request % not found', p_request_id USING ERRCODE = 'KE006';
  END IF;
  -- Account before request: the lock order of every credit function.
  PERFORM FROM keen.credit_accounts AS a WHERE a.id = v_request.account_id FOR UPDATE;
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r WHERE r.id = p_request_id FOR UPDATE;
  IF v_request.status = 'completed' THEN
    -- A repeated webhook gets the original purchase.
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t WHERE t.id = v_request.purchase_transaction_id;
    RETURN v_entry;
  ELSIF v_request.status = 'failed' THEN
    RAISE EXCEPTION 'recharge request % already failed', p_request_id USING ERRCODE = 'KE007';
  END IF;
  -- A random id: nothing another party knows (the request id was once broadcast) names the
  -- purchase in advance; the request's status makes a repeated call return this entry.
  PERFORM keen.check_text(p_stripe_payment_intent_id, 'payment intent id', 255);
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, transaction_type, amount, description, idempotency_key,
          stripe_payment_intent_id, metadata)
  VALUES (pg_catalog.gen_random_uuid(), v_request.user_id, v_request.account_id,
          'purchase', v_request.amount, 'auto-recharge', 'recharge:' || v_request.id::text,
          p_stripe_payment_intent_id, pg_catalog.jsonb_build_object('recharge_request_id', v_request.id))
  RETURNING t.* INTO v_entry;
  UPDATE keen.recharge_requests AS r
     SET status = 'completed', resolved_at = pg_catalog.now(), purchase_transaction_id = v_entry.id
   WHERE r.id = p_request_id;
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
  v_request keen.recharge_requests;
BEGIN
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r WHERE r.id = p_request_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'recharge request % not found', p_request_id USING ERRCODE = 'KE006';
  END IF;
  IF v_request.status NOT IN ('pending', 'processing') THEN
    RAISE EXCEPTION 'recharge request % is already %', p_request_id, v_request.status USING ERRCODE = 'KE007';
  END IF;
  -- Failing closes the request, so the next deduction below the threshold may open another.
  UPDATE keen.recharge_requests AS r
     SET status = 'failed', failure_reason = coalesce(p_reason, 'unspecified'), resolved_at = pg_catalog.now()
   WHERE r.id = p_request_id RETURNING r.* INTO v_request;
  RETURN v_request;
END
$$;

-- ===== triggers ==============================================================
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.credit_accounts
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();
-- The guard fires before _100_set_updated_at: it refuses or derives the money columns.
CREATE TRIGGER _050_guard BEFORE INSERT OR UPDATE ON keen.credit_accounts
  FOR EACH ROW EXECUTE FUNCTION keen.tg_credit_accounts__guard();
-- Append-only: row triggers for UPDATE/DELETE, a statement trigger for TRUNCATE.
CREATE TRIGGER _010_append_only BEFORE UPDATE OR DELETE ON keen.credit_transactions
  FOR EACH ROW EXECUTE FUNCTION keen.tg_credit_transactions__append_only();
CREATE TRIGGER _010_append_only_truncate BEFORE TRUNCATE ON keen.credit_transactions
  FOR EACH STATEMENT EXECUTE FUNCTION keen.tg_credit_transactions__append_only();
CREATE TRIGGER _100_post BEFORE INSERT ON keen.credit_transactions
  FOR EACH ROW EXECUTE FUNCTION keen.tg_credit_transactions__post();
CREATE TRIGGER _100_apply AFTER INSERT ON keen.credit_transactions
  FOR EACH ROW EXECUTE FUNCTION keen.tg_credit_transactions__apply();
CREATE TRIGGER _100_reserve BEFORE INSERT ON keen.credit_holds
  FOR EACH ROW EXECUTE FUNCTION keen.tg_credit_holds__reserve();
CREATE TRIGGER _100_guard BEFORE UPDATE ON keen.credit_holds
  FOR EACH ROW EXECUTE FUNCTION keen.tg_credit_holds__guard();
CREATE TRIGGER _200_apply_insert AFTER INSERT ON keen.credit_holds
  FOR EACH ROW EXECUTE FUNCTION keen.tg_credit_holds__apply();
CREATE TRIGGER _200_apply_update AFTER UPDATE OF status ON keen.credit_holds
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION keen.tg_credit_holds__apply();

-- ===== row-level security ====================================================
ALTER TABLE keen.credit_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_accounts FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_transactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_transactions FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.credit_holds FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.recharge_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.recharge_requests FORCE ROW LEVEL SECURITY;
-- Tenants see and write only their own rows; the owner policy serves the
-- cross-tenant SECURITY DEFINER functions and the dashboard refresh.
CREATE POLICY select_own ON keen.credit_accounts FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.credit_accounts FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.credit_transactions FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.credit_transactions FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.credit_holds FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.credit_holds FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.recharge_requests FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.recharge_requests FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
-- Read through RLS only: money moves through the SECURITY DEFINER functions alone, so
-- keen_app can neither lock an account table nor write money around them.
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
  -- Helpers the read functions above call as the invoker (PostgreSQL checks EXECUTE on every
  -- nested call against current_user). The writing helpers (account lock, idempotency,
  -- limits) run only inside the SECURITY DEFINER functions, as keen_owner.
  keen.validate_credit_amount(numeric, text),
  keen.credit_local_date(uuid, timestamptz)
TO keen_app;
-- Not granted: in_migration (called only by the append-only trigger, which keen_app never
-- reaches: it has no write privilege on the ledger), the writing helpers, and the billing
-- and operator functions.

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
COMMENT ON COLUMN keen.credit_accounts.spent_today IS 'Usage posted on spent_today_date; derived from the ledger by the guard trigger.';
COMMENT ON COLUMN keen.credit_accounts.spent_month_start IS 'First local day of the month that spent_this_month counts.';
COMMENT ON COLUMN keen.credit_accounts.spent_this_month IS 'Usage posted in the month from spent_month_start; derived from the ledger.';
COMMENT ON FUNCTION keen.validate_credit_amount(numeric, text) IS
  'Returns the amount if positive, finite, below 1e8 and at most 4 decimal places; else raises KE004.';
COMMENT ON FUNCTION keen.round_cost(numeric) IS
  'A 6-place session cost as a 4-place ledger amount: rounded up (ceiling), never below the cost, at most 0.0001 above.';
COMMENT ON FUNCTION keen.credit_local_date(uuid, timestamptz) IS 'The user''s local calendar day of a moment (users.timezone).';
COMMENT ON FUNCTION keen.lock_credit_account(uuid) IS
  'Locks the user''s credit account FOR UPDATE (KE006 when missing) and expires its lapsed holds.';
COMMENT ON FUNCTION keen.credit_fingerprint(text, jsonb) IS 'Fingerprint of an idempotent call: operation and arguments.';
COMMENT ON FUNCTION keen.idempotent_id(uuid, text, text) IS 'Row id derived from account and idempotency key; random without a key.';
COMMENT ON FUNCTION keen.check_idempotency_key(text) IS 'Raises KE013 for a key that is empty or longer than 255 characters.';
COMMENT ON FUNCTION keen.find_idempotent_entry(uuid, text, text) IS
  'The ledger row of an idempotency key (NULL if none); KE005 when it was made with other arguments.';
COMMENT ON FUNCTION keen.require_agent_session(uuid) IS 'Raises KE006 unless the agent session (uuid id) is the caller''s.';
COMMENT ON FUNCTION keen.check_spending_limits(keen.credit_accounts, numeric) IS
  'Raises KE002/KE003 when spent + held + amount would exceed the daily/monthly limit (user''s time zone).';
COMMENT ON FUNCTION keen.in_migration() IS
  'True only for a migration: acting as keen_owner from a login that is not a keen_app member.';
COMMENT ON FUNCTION keen.tg_credit_transactions__post() IS
  'Ledger BEFORE INSERT: locks the account, checks state, balance, holds and limits, numbers the entry.';
COMMENT ON FUNCTION keen.tg_credit_transactions__apply() IS
  'Ledger AFTER INSERT: captures the hold, moves the account balance, records an auto-recharge request.';
COMMENT ON FUNCTION keen.tg_credit_transactions__append_only() IS 'Refuses UPDATE, DELETE and TRUNCATE of the ledger outside a migration.';
COMMENT ON FUNCTION keen.tg_credit_accounts__guard() IS
  'Refuses money-column changes that do not follow from the newest ledger entry or the active holds; derives totals and counters.';
COMMENT ON FUNCTION keen.tg_credit_holds__reserve() IS 'Holds BEFORE INSERT: locks the account, checks state, balance and limits.';
COMMENT ON FUNCTION keen.tg_credit_holds__guard() IS
  'Holds BEFORE UPDATE: terms immutable; only active holds change; captured only by their ledger entry.';
COMMENT ON FUNCTION keen.tg_credit_holds__apply() IS 'Holds AFTER INSERT/UPDATE: recomputes the account''s held_amount.';
COMMENT ON FUNCTION keen.deduct_credits(numeric, uuid, text, text) IS
  'Charges usage atomically under the account lock: balance, holds, daily/monthly limits, idempotency key.';
COMMENT ON FUNCTION keen.add_credits(numeric, text, text, text, text, jsonb) IS
  'Credits a purchase, refund or adjustment; idempotent by key (or by payment intent without a key).';
COMMENT ON FUNCTION keen.check_credits(numeric) IS 'Whether the available balance (balance minus active holds) covers an amount.';
COMMENT ON FUNCTION keen.credit_balance() IS 'The caller''s balance, holds, lifetime totals, spending today/this month and limits.';
COMMENT ON FUNCTION keen.hold_credits(uuid, numeric, text, interval) IS
  'Reserves credits for a running agent until captured, released or expired (p_expires_in, default 1 hour).';
COMMENT ON FUNCTION keen.capture_hold(uuid, numeric, text) IS
  'Charges at most the held amount (default all of it) and frees the rest; a hold is captured once (KE007).';
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
COMMENT ON COLUMN keen.credit_accounts.updated_at IS 'When the row was last updated (trigger _100_set_updated_at).';
COMMENT ON COLUMN keen.credit_holds.id IS 'Primary key.';
COMMENT ON COLUMN keen.credit_holds.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN keen.credit_transactions.id IS 'Primary key.';
COMMENT ON COLUMN keen.credit_transactions.created_at IS 'When the entry was posted (set by the ledger trigger).';
COMMENT ON COLUMN keen.recharge_requests.id IS 'Primary key.';
COMMENT ON COLUMN keen.recharge_requests.created_at IS 'When the row was inserted.';

RESET ROLE;
