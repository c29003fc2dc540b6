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
  created_at               timestamptz   NOT NULL DEFAULT now(),
  updated_at               timestamptz   NOT NULL DEFAULT now(),
  CONSTRAINT credit_accounts_pkey PRIMARY KEY (id),
  CONSTRAINT credit_accounts_user_id_key UNIQUE (user_id),
  CONSTRAINT credit_accounts_user_id_id_key UNIQUE (user_id, id),
  CONSTRAINT credit_accounts_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  -- numeric accepts 'NaN', which passes `>= 0` and equals itself: money columns refuse it.
  CONSTRAINT credit_accounts_current_balance_check
    CHECK (current_balance >= 0 AND current_balance <> 'NaN'),
  CONSTRAINT credit_accounts_held_amount_check CHECK (held_amount >= 0 AND held_amount <= current_balance),
  CONSTRAINT credit_accounts_lifetime_check CHECK (
    lifetime_purchased >= 0 AND lifetime_spent >= 0 AND lifetime_purchased <> 'NaN' AND lifetime_spent <> 'NaN'),
  CONSTRAINT credit_accounts_daily_limit_check
    CHECK (daily_limit IS NULL OR (daily_limit > 0 AND daily_limit <> 'NaN')),
  CONSTRAINT credit_accounts_monthly_limit_check
    CHECK (monthly_limit IS NULL OR (monthly_limit > 0 AND monthly_limit <> 'NaN')),
  CONSTRAINT credit_accounts_auto_recharge_check
    CHECK (auto_recharge_threshold >= 0 AND auto_recharge_amount > 0),
  CONSTRAINT credit_accounts_account_status_check
    CHECK (account_status IN ('active', 'suspended', 'closed')),
  CONSTRAINT credit_accounts_suspended_reason_check
    CHECK (suspended_reason IS NULL OR account_status <> 'active'),
  CONSTRAINT credit_accounts_last_entry_no_check CHECK (last_entry_no >= 0)
);

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
  CONSTRAINT credit_transactions_stripe_payment_intent_id_key UNIQUE (stripe_payment_intent_id),
  CONSTRAINT credit_transactions_account_fkey FOREIGN KEY (user_id, account_id)
    REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_transactions_session_fkey FOREIGN KEY (user_id, session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT credit_transactions_transaction_type_check
    CHECK (transaction_type IN ('purchase', 'usage', 'refund', 'adjustment')),
  CONSTRAINT credit_transactions_amount_check CHECK (amount <> 0 AND amount <> 'NaN'),
  -- Credits come in by purchase and refund and go out by usage; adjustments go either way.
  CONSTRAINT credit_transactions_amount_sign_check CHECK (
    CASE transaction_type WHEN 'usage' THEN amount < 0
                          WHEN 'adjustment' THEN true
                          ELSE amount > 0 END),
  CONSTRAINT credit_transactions_balance_check
    CHECK (balance_before >= 0 AND balance_after >= 0 AND balance_after = balance_before + amount
           AND balance_before <> 'NaN' AND balance_after <> 'NaN'),
  CONSTRAINT credit_transactions_entry_no_check CHECK (entry_no > 0),
  CONSTRAINT credit_transactions_idempotency_key_check
    CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255)
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
  CONSTRAINT recharge_requests_failure_reason_check CHECK (failure_reason IS NULL OR status = 'failed')
);

-- ===== indexes ===============================================================
-- Idempotency keys are unique per account.
CREATE UNIQUE INDEX credit_transactions_account_id_idempotency_key_key
  ON keen.credit_transactions (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX credit_transactions_user_id_created_at_idx
  ON keen.credit_transactions (user_id, created_at DESC, entry_no DESC);
CREATE INDEX credit_transactions_session_id_idx ON keen.credit_transactions (session_id)
  WHERE session_id IS NOT NULL;
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

-- ===== triggers ==============================================================
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.credit_accounts
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();

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
CREATE POLICY update_own ON keen.credit_accounts FOR UPDATE TO keen_app
  USING (user_id = (SELECT keen.current_user_id()))
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.credit_accounts FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.credit_transactions FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY insert_own ON keen.credit_transactions FOR INSERT TO keen_app
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.credit_transactions FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.credit_holds FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY insert_own ON keen.credit_holds FOR INSERT TO keen_app
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY update_own ON keen.credit_holds FOR UPDATE TO keen_app
  USING (user_id = (SELECT keen.current_user_id()))
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.credit_holds FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.recharge_requests FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY insert_own ON keen.recharge_requests FOR INSERT TO keen_app
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.recharge_requests FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
GRANT SELECT, UPDATE ON keen.credit_accounts TO keen_app;
GRANT SELECT, INSERT ON keen.credit_transactions TO keen_app;
GRANT SELECT, INSERT, UPDATE ON keen.credit_holds TO keen_app;
GRANT SELECT, INSERT ON keen.recharge_requests TO keen_app;

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

RESET ROLE;
