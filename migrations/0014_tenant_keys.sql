-- Tenant keys (issue 19): every key of a tenant table leads with user_id, so each table can
-- be distributed by user_id and co-located with users (DESIGN.md "Scale beyond one server").
--   * Primary keys become (user_id, id); the separate UNIQUE (user_id, id) keys, which the
--     composite foreign keys named, go: the primary key is now their target. users keeps
--     (id) = its tenant key (user_id is generated from id); its own UNIQUE (user_id) goes.
--   * Per-account unique keys name the tenant instead of the account (one account per user,
--     so the same rows are unique): ledger entry numbers, idempotency keys, a hold's capture,
--     the one open recharge request; the payment-intent key skips rows without an intent.
--   * Foreign keys that Citus cannot distribute: the holds<->ledger cycle loses its
--     hold->capture half (verify_ledger checks capture_transaction_id); the two
--     ON DELETE SET NULL (column) keys become RESTRICT (nothing deletes a session or a token
--     that another row still names, but close_account, which deletes them together).
--   * RLS policies call keen.current_user_id() directly (Citus refuses a sub-SELECT there);
--     users' policy names its key id.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';
-- Every key dropped here is replaced in this same transaction by its twin leading with
-- user_id (the same rows stay unique, the same references checked); yoyo runs the migration
-- in one transaction, where CONCURRENTLY cannot run, and the tables are locked briefly
-- (lock_timeout above) while the keys are rebuilt.
-- squawk-ignore-file ban-drop-constraint
-- squawk-ignore-file require-concurrent-index-deletion
-- squawk-ignore-file disallowed-unique-constraint
-- squawk-ignore-file constraint-missing-not-valid
-- squawk-ignore-file adding-foreign-key-constraint
-- squawk-ignore-file ban-drop-index

-- ===== foreign keys that name a (user_id, id) key ===========================================
ALTER TABLE keen.auth_tokens DROP CONSTRAINT auth_tokens_replaced_by_fkey;
ALTER TABLE keen.agent_sessions DROP CONSTRAINT agent_sessions_parent_fkey;
ALTER TABLE keen.session_events DROP CONSTRAINT session_events_session_fkey;
ALTER TABLE keen.websocket_connections DROP CONSTRAINT websocket_connections_session_fkey;
ALTER TABLE keen.credit_transactions DROP CONSTRAINT credit_transactions_account_fkey;
ALTER TABLE keen.credit_transactions DROP CONSTRAINT credit_transactions_session_fkey;
ALTER TABLE keen.credit_transactions DROP CONSTRAINT credit_transactions_hold_fkey;
ALTER TABLE keen.credit_holds DROP CONSTRAINT credit_holds_account_fkey;
ALTER TABLE keen.credit_holds DROP CONSTRAINT credit_holds_session_fkey;
ALTER TABLE keen.credit_holds DROP CONSTRAINT credit_holds_capture_transaction_fkey;
ALTER TABLE keen.recharge_requests DROP CONSTRAINT recharge_requests_account_fkey;
ALTER TABLE keen.recharge_requests DROP CONSTRAINT recharge_requests_triggered_by_fkey;
ALTER TABLE keen.recharge_requests DROP CONSTRAINT recharge_requests_purchase_fkey;

-- ===== primary keys (user_id, id) ===========================================================
ALTER TABLE keen.users DROP CONSTRAINT users_user_id_key;

ALTER TABLE keen.auth_tokens DROP CONSTRAINT auth_tokens_user_id_id_key, DROP CONSTRAINT auth_tokens_pkey;
CREATE UNIQUE INDEX auth_tokens_pkey ON keen.auth_tokens (user_id, id);
ALTER TABLE keen.auth_tokens ADD CONSTRAINT auth_tokens_pkey PRIMARY KEY USING INDEX auth_tokens_pkey;

ALTER TABLE keen.user_audit_log DROP CONSTRAINT user_audit_log_user_id_id_key, DROP CONSTRAINT user_audit_log_pkey;
CREATE UNIQUE INDEX user_audit_log_pkey ON keen.user_audit_log (user_id, id);
ALTER TABLE keen.user_audit_log ADD CONSTRAINT user_audit_log_pkey PRIMARY KEY USING INDEX user_audit_log_pkey;

ALTER TABLE keen.agent_sessions DROP CONSTRAINT agent_sessions_user_id_id_key, DROP CONSTRAINT agent_sessions_pkey;
CREATE UNIQUE INDEX agent_sessions_pkey ON keen.agent_sessions (user_id, id);
ALTER TABLE keen.agent_sessions ADD CONSTRAINT agent_sessions_pkey PRIMARY KEY USING INDEX agent_sessions_pkey;

ALTER TABLE keen.session_events DROP CONSTRAINT session_events_pkey;
DROP INDEX keen.session_events_user_id_id_idx;
CREATE UNIQUE INDEX session_events_pkey ON keen.session_events (user_id, id);
ALTER TABLE keen.session_events ADD CONSTRAINT session_events_pkey PRIMARY KEY USING INDEX session_events_pkey;

ALTER TABLE keen.websocket_connections
  DROP CONSTRAINT websocket_connections_user_id_id_key, DROP CONSTRAINT websocket_connections_pkey;
CREATE UNIQUE INDEX websocket_connections_pkey ON keen.websocket_connections (user_id, id);
ALTER TABLE keen.websocket_connections
  ADD CONSTRAINT websocket_connections_pkey PRIMARY KEY USING INDEX websocket_connections_pkey;

ALTER TABLE keen.credit_accounts DROP CONSTRAINT credit_accounts_user_id_id_key, DROP CONSTRAINT credit_accounts_pkey;
CREATE UNIQUE INDEX credit_accounts_pkey ON keen.credit_accounts (user_id, id);
ALTER TABLE keen.credit_accounts ADD CONSTRAINT credit_accounts_pkey PRIMARY KEY USING INDEX credit_accounts_pkey;

ALTER TABLE keen.credit_transactions
  DROP CONSTRAINT credit_transactions_user_id_id_key, DROP CONSTRAINT credit_transactions_pkey;
CREATE UNIQUE INDEX credit_transactions_pkey ON keen.credit_transactions (user_id, id);
ALTER TABLE keen.credit_transactions
  ADD CONSTRAINT credit_transactions_pkey PRIMARY KEY USING INDEX credit_transactions_pkey;

ALTER TABLE keen.credit_holds DROP CONSTRAINT credit_holds_user_id_id_key, DROP CONSTRAINT credit_holds_pkey;
CREATE UNIQUE INDEX credit_holds_pkey ON keen.credit_holds (user_id, id);
ALTER TABLE keen.credit_holds ADD CONSTRAINT credit_holds_pkey PRIMARY KEY USING INDEX credit_holds_pkey;

ALTER TABLE keen.recharge_requests DROP CONSTRAINT recharge_requests_user_id_id_key, DROP CONSTRAINT recharge_requests_pkey;
CREATE UNIQUE INDEX recharge_requests_pkey ON keen.recharge_requests (user_id, id);
ALTER TABLE keen.recharge_requests ADD CONSTRAINT recharge_requests_pkey PRIMARY KEY USING INDEX recharge_requests_pkey;

-- ===== unique keys by tenant =================================================================
ALTER TABLE keen.session_events DROP CONSTRAINT session_events_session_id_seq_key;
CREATE UNIQUE INDEX session_events_user_id_session_id_seq_key ON keen.session_events (user_id, session_id, seq);
ALTER TABLE keen.session_events
  ADD CONSTRAINT session_events_user_id_session_id_seq_key UNIQUE USING INDEX session_events_user_id_session_id_seq_key;
DROP INDEX keen.session_events_session_id_id_idx;
CREATE INDEX session_events_user_id_session_id_id_idx ON keen.session_events (user_id, session_id, id);

ALTER TABLE keen.credit_transactions DROP CONSTRAINT credit_transactions_account_id_entry_no_key;
CREATE UNIQUE INDEX credit_transactions_user_id_entry_no_key ON keen.credit_transactions (user_id, entry_no);
ALTER TABLE keen.credit_transactions
  ADD CONSTRAINT credit_transactions_user_id_entry_no_key UNIQUE USING INDEX credit_transactions_user_id_entry_no_key;
DROP INDEX keen.credit_transactions_account_id_idempotency_key_key;
CREATE UNIQUE INDEX credit_transactions_user_id_idempotency_key_key
  ON keen.credit_transactions (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX keen.credit_transactions_hold_id_key;
CREATE UNIQUE INDEX credit_transactions_user_id_hold_id_key ON keen.credit_transactions (user_id, hold_id)
  WHERE hold_id IS NOT NULL;
DROP INDEX keen.credit_transactions_session_id_idx;
CREATE INDEX credit_transactions_user_id_session_id_idx ON keen.credit_transactions (user_id, session_id)
  WHERE session_id IS NOT NULL;
ALTER TABLE keen.credit_transactions DROP CONSTRAINT credit_transactions_user_id_stripe_payment_intent_id_key;
CREATE UNIQUE INDEX credit_transactions_user_id_stripe_payment_intent_id_key
  ON keen.credit_transactions (user_id, stripe_payment_intent_id) WHERE stripe_payment_intent_id IS NOT NULL;

DROP INDEX keen.credit_holds_account_id_idempotency_key_key;
CREATE UNIQUE INDEX credit_holds_user_id_idempotency_key_key
  ON keen.credit_holds (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX keen.credit_holds_account_id_active_idx;
CREATE INDEX credit_holds_user_id_active_idx ON keen.credit_holds (user_id) WHERE status = 'active';
DROP INDEX keen.credit_holds_session_id_idx;
CREATE INDEX credit_holds_user_id_session_id_idx ON keen.credit_holds (user_id, session_id)
  WHERE session_id IS NOT NULL;

DROP INDEX keen.recharge_requests_account_id_open_key;
CREATE UNIQUE INDEX recharge_requests_user_id_open_key
  ON keen.recharge_requests (user_id) WHERE status IN ('pending', 'processing');

DROP INDEX keen.agent_sessions_parent_session_id_idx;
CREATE INDEX agent_sessions_user_id_parent_session_id_idx ON keen.agent_sessions (user_id, parent_session_id)
  WHERE parent_session_id IS NOT NULL;
DROP INDEX keen.websocket_connections_session_id_idx;
CREATE INDEX websocket_connections_user_id_session_id_idx ON keen.websocket_connections (user_id, session_id)
  WHERE session_id IS NOT NULL;
DROP INDEX keen.auth_tokens_family_id_idx;
CREATE INDEX auth_tokens_user_id_family_id_idx ON keen.auth_tokens (user_id, family_id)
  WHERE family_id IS NOT NULL;

-- ===== the foreign keys again, on the new primary keys =====================================
ALTER TABLE keen.auth_tokens ADD CONSTRAINT auth_tokens_replaced_by_fkey FOREIGN KEY (user_id, replaced_by)
  REFERENCES keen.auth_tokens (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.agent_sessions ADD CONSTRAINT agent_sessions_parent_fkey FOREIGN KEY (user_id, parent_session_id)
  REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.session_events ADD CONSTRAINT session_events_session_fkey FOREIGN KEY (user_id, session_id)
  REFERENCES keen.agent_sessions (user_id, id) ON DELETE CASCADE;
ALTER TABLE keen.websocket_connections ADD CONSTRAINT websocket_connections_session_fkey
  FOREIGN KEY (user_id, session_id) REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.credit_transactions ADD CONSTRAINT credit_transactions_account_fkey FOREIGN KEY (user_id, account_id)
  REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.credit_transactions ADD CONSTRAINT credit_transactions_session_fkey FOREIGN KEY (user_id, session_id)
  REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.credit_transactions ADD CONSTRAINT credit_transactions_hold_fkey FOREIGN KEY (user_id, hold_id)
  REFERENCES keen.credit_holds (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.credit_holds ADD CONSTRAINT credit_holds_account_fkey FOREIGN KEY (user_id, account_id)
  REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.credit_holds ADD CONSTRAINT credit_holds_session_fkey FOREIGN KEY (user_id, session_id)
  REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.recharge_requests ADD CONSTRAINT recharge_requests_account_fkey FOREIGN KEY (user_id, account_id)
  REFERENCES keen.credit_accounts (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.recharge_requests ADD CONSTRAINT recharge_requests_triggered_by_fkey
  FOREIGN KEY (user_id, triggered_by_transaction_id) REFERENCES keen.credit_transactions (user_id, id) ON DELETE RESTRICT;
ALTER TABLE keen.recharge_requests ADD CONSTRAINT recharge_requests_purchase_fkey
  FOREIGN KEY (user_id, purchase_transaction_id) REFERENCES keen.credit_transactions (user_id, id) ON DELETE RESTRICT;

-- ===== row-level security: the tenant function itself ========================================
-- users by its key id (= user_id, generated from it): the column Citus distributes it by
-- and the one its primary key indexes.
ALTER POLICY select_own ON keen.users USING (id = keen.current_user_id());
ALTER POLICY select_own ON keen.auth_tokens USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.user_audit_log USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.agent_sessions USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.session_events USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.websocket_connections USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.credit_accounts USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.credit_transactions USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.credit_holds USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.recharge_requests USING (user_id = keen.current_user_id());
ALTER POLICY select_own ON keen.daily_usage_stats USING (user_id = keen.current_user_id());

-- ===== functions that name a key by its columns ==============================================
CREATE OR REPLACE FUNCTION keen.request_recharge(
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

-- verify_ledger groups by the new primary key and joins each table on user_id too (the
-- distribution column: the same query then runs shard by shard on Citus).
CREATE OR REPLACE FUNCTION keen.verify_ledger()
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
      LEFT JOIN keen.credit_transactions AS t ON t.user_id = a.user_id AND t.account_id = a.id
     GROUP BY a.user_id, a.id
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
