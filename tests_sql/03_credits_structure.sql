-- Structure: credit accounts, the ledger, holds and recharge requests.
-- Every column (type, nullability, default), key, foreign key, CHECK constraint and index;
-- the rules behind the constraints are exercised in 05-08_*_rules.sql.
BEGIN;
SELECT plan(263);

-- ===== keen.credit_accounts =======================================================
SELECT has_table('keen', 'credit_accounts', 'keen.credit_accounts exists');
SELECT table_owner_is('keen', 'credit_accounts', 'keen_owner', 'keen_owner owns keen.credit_accounts');
SELECT columns_are('keen', 'credit_accounts', ARRAY[
    'id', 'user_id', 'current_balance', 'held_amount', 'lifetime_purchased',
    'lifetime_spent', 'daily_limit', 'monthly_limit', 'auto_recharge_enabled',
    'auto_recharge_threshold', 'auto_recharge_amount', 'account_status',
    'suspended_reason', 'last_entry_no', 'spent_today_date', 'spent_today',
    'spent_month_start', 'spent_this_month', 'created_at', 'updated_at', 'next_hold_expiry'],
  'keen.credit_accounts has exactly the expected columns');
SELECT col_type_is('keen', 'credit_accounts', 'id', 'uuid', 'credit_accounts.id is uuid');
SELECT col_not_null('keen', 'credit_accounts', 'id', 'credit_accounts.id is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'id', 'gen_random_uuid()', 'credit_accounts.id defaults to gen_random_uuid()');
SELECT col_type_is('keen', 'credit_accounts', 'user_id', 'uuid', 'credit_accounts.user_id is uuid');
SELECT col_not_null('keen', 'credit_accounts', 'user_id', 'credit_accounts.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_accounts', 'user_id', 'credit_accounts.user_id has no default');
SELECT col_type_is('keen', 'credit_accounts', 'current_balance', 'numeric(12,4)', 'credit_accounts.current_balance is numeric(12,4)');
SELECT col_not_null('keen', 'credit_accounts', 'current_balance', 'credit_accounts.current_balance is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'current_balance', '0', 'credit_accounts.current_balance defaults to 0');
SELECT col_type_is('keen', 'credit_accounts', 'held_amount', 'numeric(12,4)', 'credit_accounts.held_amount is numeric(12,4)');
SELECT col_not_null('keen', 'credit_accounts', 'held_amount', 'credit_accounts.held_amount is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'held_amount', '0', 'credit_accounts.held_amount defaults to 0');
SELECT col_type_is('keen', 'credit_accounts', 'lifetime_purchased', 'numeric(14,4)', 'credit_accounts.lifetime_purchased is numeric(14,4)');
SELECT col_not_null('keen', 'credit_accounts', 'lifetime_purchased', 'credit_accounts.lifetime_purchased is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'lifetime_purchased', '0', 'credit_accounts.lifetime_purchased defaults to 0');
SELECT col_type_is('keen', 'credit_accounts', 'lifetime_spent', 'numeric(14,4)', 'credit_accounts.lifetime_spent is numeric(14,4)');
SELECT col_not_null('keen', 'credit_accounts', 'lifetime_spent', 'credit_accounts.lifetime_spent is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'lifetime_spent', '0', 'credit_accounts.lifetime_spent defaults to 0');
SELECT col_type_is('keen', 'credit_accounts', 'daily_limit', 'numeric(12,4)', 'credit_accounts.daily_limit is numeric(12,4)');
SELECT col_is_null('keen', 'credit_accounts', 'daily_limit', 'credit_accounts.daily_limit is nullable');
SELECT col_hasnt_default('keen', 'credit_accounts', 'daily_limit', 'credit_accounts.daily_limit has no default');
SELECT col_type_is('keen', 'credit_accounts', 'monthly_limit', 'numeric(12,4)', 'credit_accounts.monthly_limit is numeric(12,4)');
SELECT col_is_null('keen', 'credit_accounts', 'monthly_limit', 'credit_accounts.monthly_limit is nullable');
SELECT col_hasnt_default('keen', 'credit_accounts', 'monthly_limit', 'credit_accounts.monthly_limit has no default');
SELECT col_type_is('keen', 'credit_accounts', 'auto_recharge_enabled', 'boolean', 'credit_accounts.auto_recharge_enabled is boolean');
SELECT col_not_null('keen', 'credit_accounts', 'auto_recharge_enabled', 'credit_accounts.auto_recharge_enabled is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'auto_recharge_enabled', 'false', 'credit_accounts.auto_recharge_enabled defaults to false');
SELECT col_type_is('keen', 'credit_accounts', 'auto_recharge_threshold', 'numeric(12,4)', 'credit_accounts.auto_recharge_threshold is numeric(12,4)');
SELECT col_not_null('keen', 'credit_accounts', 'auto_recharge_threshold', 'credit_accounts.auto_recharge_threshold is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'auto_recharge_threshold', '10', 'credit_accounts.auto_recharge_threshold defaults to 10');
SELECT col_type_is('keen', 'credit_accounts', 'auto_recharge_amount', 'numeric(12,4)', 'credit_accounts.auto_recharge_amount is numeric(12,4)');
SELECT col_not_null('keen', 'credit_accounts', 'auto_recharge_amount', 'credit_accounts.auto_recharge_amount is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'auto_recharge_amount', '50', 'credit_accounts.auto_recharge_amount defaults to 50');
SELECT col_type_is('keen', 'credit_accounts', 'account_status', 'text', 'credit_accounts.account_status is text');
SELECT col_not_null('keen', 'credit_accounts', 'account_status', 'credit_accounts.account_status is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'account_status', 'active', 'credit_accounts.account_status defaults to active');
SELECT col_type_is('keen', 'credit_accounts', 'suspended_reason', 'text', 'credit_accounts.suspended_reason is text');
SELECT col_is_null('keen', 'credit_accounts', 'suspended_reason', 'credit_accounts.suspended_reason is nullable');
SELECT col_hasnt_default('keen', 'credit_accounts', 'suspended_reason', 'credit_accounts.suspended_reason has no default');
SELECT col_type_is('keen', 'credit_accounts', 'last_entry_no', 'bigint', 'credit_accounts.last_entry_no is bigint');
SELECT col_not_null('keen', 'credit_accounts', 'last_entry_no', 'credit_accounts.last_entry_no is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'last_entry_no', '0', 'credit_accounts.last_entry_no defaults to 0');
SELECT col_type_is('keen', 'credit_accounts', 'spent_today_date', 'date', 'credit_accounts.spent_today_date is date');
SELECT col_is_null('keen', 'credit_accounts', 'spent_today_date', 'credit_accounts.spent_today_date is nullable');
SELECT col_hasnt_default('keen', 'credit_accounts', 'spent_today_date', 'credit_accounts.spent_today_date has no default');
SELECT col_type_is('keen', 'credit_accounts', 'spent_today', 'numeric(14,4)', 'credit_accounts.spent_today is numeric(14,4)');
SELECT col_not_null('keen', 'credit_accounts', 'spent_today', 'credit_accounts.spent_today is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'spent_today', '0', 'credit_accounts.spent_today defaults to 0');
SELECT col_type_is('keen', 'credit_accounts', 'spent_month_start', 'date', 'credit_accounts.spent_month_start is date');
SELECT col_is_null('keen', 'credit_accounts', 'spent_month_start', 'credit_accounts.spent_month_start is nullable');
SELECT col_hasnt_default('keen', 'credit_accounts', 'spent_month_start', 'credit_accounts.spent_month_start has no default');
SELECT col_type_is('keen', 'credit_accounts', 'spent_this_month', 'numeric(14,4)', 'credit_accounts.spent_this_month is numeric(14,4)');
SELECT col_not_null('keen', 'credit_accounts', 'spent_this_month', 'credit_accounts.spent_this_month is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'spent_this_month', '0', 'credit_accounts.spent_this_month defaults to 0');
SELECT col_type_is('keen', 'credit_accounts', 'created_at', 'timestamp with time zone', 'credit_accounts.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'credit_accounts', 'created_at', 'credit_accounts.created_at is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'created_at', 'now()', 'credit_accounts.created_at defaults to now()');
SELECT col_type_is('keen', 'credit_accounts', 'updated_at', 'timestamp with time zone', 'credit_accounts.updated_at is timestamp with time zone');
SELECT col_not_null('keen', 'credit_accounts', 'updated_at', 'credit_accounts.updated_at is NOT NULL');
SELECT col_default_is('keen', 'credit_accounts', 'updated_at', 'now()', 'credit_accounts.updated_at defaults to now()');
-- keys
SELECT hasnt_index('keen', 'credit_accounts', 'no UNIQUE (user_id, id) beside the primary key');
SELECT col_is_unique('keen', 'credit_accounts', ARRAY['user_id'], 'credit_accounts_user_id_key: UNIQUE (user_id)');
SELECT has_pk('keen', 'credit_accounts', 'keen.credit_accounts has a primary key');
SELECT col_is_pk('keen', 'credit_accounts', ARRAY['user_id', 'id'], 'credit_accounts_pkey: PRIMARY KEY (user_id, id)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'credit_accounts', ARRAY['user_id'], 'keen', 'users', ARRAY['id'],
  'credit_accounts_user_id_fkey: (user_id) references keen.users (id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.credit_accounts'::regclass AND contype = 'f'$$,
  $$VALUES
    ('credit_accounts_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES keen.users(id) ON DELETE CASCADE')$$,
  'keen.credit_accounts has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'credit_accounts', 'keen.credit_accounts has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.credit_accounts'::regclass AND contype = 'c'$$,
  ARRAY['credit_accounts_check'],
  'keen.credit_accounts has exactly its named CHECK constraints');
-- the CHECK is one call of its IMMUTABLE function (migration 0021: a stored expression is
-- compiled again in every statement; the function's rules are tested in 07_credits_rules)
SELECT is(
  (SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'credit_accounts_check'),
  'CHECK (keen.credit_accounts_row_ok(current_balance, held_amount, lifetime_purchased, lifetime_spent, daily_limit, monthly_limit, auto_recharge_threshold, auto_recharge_amount, spent_today, spent_this_month, last_entry_no, account_status, suspended_reason))',
  'credit_accounts_check calls keen.credit_accounts_row_ok with the row''s columns');
SELECT volatility_is('keen', 'credit_accounts_row_ok',
  ARRAY['numeric', 'numeric', 'numeric', 'numeric', 'numeric', 'numeric', 'numeric', 'numeric',
        'numeric', 'numeric', 'bigint', 'text', 'text'], 'immutable',
  'keen.credit_accounts_row_ok is IMMUTABLE');
-- indexes
SELECT indexes_are('keen', 'credit_accounts', ARRAY[
    'credit_accounts_pkey', 'credit_accounts_user_id_key'],
  'keen.credit_accounts has exactly the expected indexes');

-- ===== keen.credit_transactions ===================================================
SELECT has_table('keen', 'credit_transactions', 'keen.credit_transactions exists');
SELECT table_owner_is('keen', 'credit_transactions', 'keen_owner', 'keen_owner owns keen.credit_transactions');
SELECT columns_are('keen', 'credit_transactions', ARRAY[
    'id', 'user_id', 'account_id', 'entry_no', 'transaction_type', 'amount',
    'balance_before', 'balance_after', 'claude_cost_usd', 'markup_multiplier',
    'session_id', 'hold_id', 'description', 'metadata', 'idempotency_key',
    'request_fingerprint', 'stripe_payment_intent_id', 'created_at', 'created_by_ip'],
  'keen.credit_transactions has exactly the expected columns');
SELECT col_type_is('keen', 'credit_transactions', 'id', 'uuid', 'credit_transactions.id is uuid');
SELECT col_not_null('keen', 'credit_transactions', 'id', 'credit_transactions.id is NOT NULL');
SELECT col_default_is('keen', 'credit_transactions', 'id', 'gen_random_uuid()', 'credit_transactions.id defaults to gen_random_uuid()');
SELECT col_type_is('keen', 'credit_transactions', 'user_id', 'uuid', 'credit_transactions.user_id is uuid');
SELECT col_not_null('keen', 'credit_transactions', 'user_id', 'credit_transactions.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_transactions', 'user_id', 'credit_transactions.user_id has no default');
SELECT col_type_is('keen', 'credit_transactions', 'account_id', 'uuid', 'credit_transactions.account_id is uuid');
SELECT col_not_null('keen', 'credit_transactions', 'account_id', 'credit_transactions.account_id is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_transactions', 'account_id', 'credit_transactions.account_id has no default');
SELECT col_type_is('keen', 'credit_transactions', 'entry_no', 'bigint', 'credit_transactions.entry_no is bigint');
SELECT col_not_null('keen', 'credit_transactions', 'entry_no', 'credit_transactions.entry_no is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_transactions', 'entry_no', 'credit_transactions.entry_no has no default');
SELECT col_type_is('keen', 'credit_transactions', 'transaction_type', 'text', 'credit_transactions.transaction_type is text');
SELECT col_not_null('keen', 'credit_transactions', 'transaction_type', 'credit_transactions.transaction_type is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_transactions', 'transaction_type', 'credit_transactions.transaction_type has no default');
SELECT col_type_is('keen', 'credit_transactions', 'amount', 'numeric(12,4)', 'credit_transactions.amount is numeric(12,4)');
SELECT col_not_null('keen', 'credit_transactions', 'amount', 'credit_transactions.amount is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_transactions', 'amount', 'credit_transactions.amount has no default');
SELECT col_type_is('keen', 'credit_transactions', 'balance_before', 'numeric(12,4)', 'credit_transactions.balance_before is numeric(12,4)');
SELECT col_not_null('keen', 'credit_transactions', 'balance_before', 'credit_transactions.balance_before is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_transactions', 'balance_before', 'credit_transactions.balance_before has no default');
SELECT col_type_is('keen', 'credit_transactions', 'balance_after', 'numeric(12,4)', 'credit_transactions.balance_after is numeric(12,4)');
SELECT col_not_null('keen', 'credit_transactions', 'balance_after', 'credit_transactions.balance_after is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_transactions', 'balance_after', 'credit_transactions.balance_after has no default');
SELECT col_type_is('keen', 'credit_transactions', 'claude_cost_usd', 'numeric(12,6)', 'credit_transactions.claude_cost_usd is numeric(12,6)');
SELECT col_is_null('keen', 'credit_transactions', 'claude_cost_usd', 'credit_transactions.claude_cost_usd is nullable');
SELECT col_hasnt_default('keen', 'credit_transactions', 'claude_cost_usd', 'credit_transactions.claude_cost_usd has no default');
SELECT col_type_is('keen', 'credit_transactions', 'markup_multiplier', 'numeric(4,2)', 'credit_transactions.markup_multiplier is numeric(4,2)');
SELECT col_is_null('keen', 'credit_transactions', 'markup_multiplier', 'credit_transactions.markup_multiplier is nullable');
SELECT col_hasnt_default('keen', 'credit_transactions', 'markup_multiplier', 'credit_transactions.markup_multiplier has no default');
SELECT col_type_is('keen', 'credit_transactions', 'session_id', 'uuid', 'credit_transactions.session_id is uuid');
SELECT col_is_null('keen', 'credit_transactions', 'session_id', 'credit_transactions.session_id is nullable');
SELECT col_hasnt_default('keen', 'credit_transactions', 'session_id', 'credit_transactions.session_id has no default');
SELECT col_type_is('keen', 'credit_transactions', 'hold_id', 'uuid', 'credit_transactions.hold_id is uuid');
SELECT col_is_null('keen', 'credit_transactions', 'hold_id', 'credit_transactions.hold_id is nullable');
SELECT col_hasnt_default('keen', 'credit_transactions', 'hold_id', 'credit_transactions.hold_id has no default');
SELECT col_type_is('keen', 'credit_transactions', 'description', 'text', 'credit_transactions.description is text');
SELECT col_not_null('keen', 'credit_transactions', 'description', 'credit_transactions.description is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_transactions', 'description', 'credit_transactions.description has no default');
SELECT col_type_is('keen', 'credit_transactions', 'metadata', 'jsonb', 'credit_transactions.metadata is jsonb');
SELECT col_not_null('keen', 'credit_transactions', 'metadata', 'credit_transactions.metadata is NOT NULL');
SELECT col_default_is('keen', 'credit_transactions', 'metadata', '{}', 'credit_transactions.metadata defaults to {}');
SELECT col_type_is('keen', 'credit_transactions', 'idempotency_key', 'text', 'credit_transactions.idempotency_key is text');
SELECT col_is_null('keen', 'credit_transactions', 'idempotency_key', 'credit_transactions.idempotency_key is nullable');
SELECT col_hasnt_default('keen', 'credit_transactions', 'idempotency_key', 'credit_transactions.idempotency_key has no default');
SELECT col_type_is('keen', 'credit_transactions', 'request_fingerprint', 'text', 'credit_transactions.request_fingerprint is text');
SELECT col_is_null('keen', 'credit_transactions', 'request_fingerprint', 'credit_transactions.request_fingerprint is nullable');
SELECT col_hasnt_default('keen', 'credit_transactions', 'request_fingerprint', 'credit_transactions.request_fingerprint has no default');
SELECT col_type_is('keen', 'credit_transactions', 'stripe_payment_intent_id', 'text', 'credit_transactions.stripe_payment_intent_id is text');
SELECT col_is_null('keen', 'credit_transactions', 'stripe_payment_intent_id', 'credit_transactions.stripe_payment_intent_id is nullable');
SELECT col_hasnt_default('keen', 'credit_transactions', 'stripe_payment_intent_id', 'credit_transactions.stripe_payment_intent_id has no default');
SELECT col_type_is('keen', 'credit_transactions', 'created_at', 'timestamp with time zone', 'credit_transactions.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'credit_transactions', 'created_at', 'credit_transactions.created_at is NOT NULL');
SELECT col_default_is('keen', 'credit_transactions', 'created_at', 'now()', 'credit_transactions.created_at defaults to now()');
SELECT col_type_is('keen', 'credit_transactions', 'created_by_ip', 'inet', 'credit_transactions.created_by_ip is inet');
SELECT col_is_null('keen', 'credit_transactions', 'created_by_ip', 'credit_transactions.created_by_ip is nullable');
SELECT col_hasnt_default('keen', 'credit_transactions', 'created_by_ip', 'credit_transactions.created_by_ip has no default');
-- keys
SELECT col_is_unique('keen', 'credit_transactions', ARRAY['user_id', 'entry_no'], 'credit_transactions_user_id_entry_no_key: UNIQUE (user_id, entry_no)');
SELECT is((SELECT pg_get_indexdef('keen.credit_transactions_user_id_stripe_payment_intent_id_key'::regclass)),
  'CREATE UNIQUE INDEX credit_transactions_user_id_stripe_payment_intent_id_key ON keen.credit_transactions USING btree (user_id, stripe_payment_intent_id) WHERE (stripe_payment_intent_id IS NOT NULL)',
  'credit_transactions_user_id_stripe_payment_intent_id_key: unique per tenant, rows without an intent not indexed');
SELECT hasnt_index('keen', 'credit_transactions', 'no UNIQUE (user_id, id) beside the primary key');
SELECT has_pk('keen', 'credit_transactions', 'keen.credit_transactions has a primary key');
SELECT col_is_pk('keen', 'credit_transactions', ARRAY['user_id', 'id'], 'credit_transactions_pkey: PRIMARY KEY (user_id, id)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'credit_transactions', ARRAY['user_id', 'account_id'], 'keen', 'credit_accounts', ARRAY['user_id', 'id'],
  'credit_transactions_account_fkey: (user_id, account_id) references keen.credit_accounts (user_id, id)');
SELECT fk_ok('keen', 'credit_transactions', ARRAY['user_id', 'hold_id'], 'keen', 'credit_holds', ARRAY['user_id', 'id'],
  'credit_transactions_hold_fkey: (user_id, hold_id) references keen.credit_holds (user_id, id)');
SELECT fk_ok('keen', 'credit_transactions', ARRAY['user_id', 'session_id'], 'keen', 'agent_sessions', ARRAY['user_id', 'id'],
  'credit_transactions_session_fkey: (user_id, session_id) references keen.agent_sessions (user_id, id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.credit_transactions'::regclass AND contype = 'f'$$,
  $$VALUES
    ('credit_transactions_account_fkey', 'FOREIGN KEY (user_id, account_id) REFERENCES keen.credit_accounts(user_id, id) ON DELETE RESTRICT'),
    ('credit_transactions_hold_fkey', 'FOREIGN KEY (user_id, hold_id) REFERENCES keen.credit_holds(user_id, id) ON DELETE RESTRICT'),
    ('credit_transactions_session_fkey', 'FOREIGN KEY (user_id, session_id) REFERENCES keen.agent_sessions(user_id, id) ON DELETE RESTRICT')$$,
  'keen.credit_transactions has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'credit_transactions', 'keen.credit_transactions has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.credit_transactions'::regclass AND contype = 'c'$$,
  ARRAY['credit_transactions_check'],
  'keen.credit_transactions has exactly its named CHECK constraints');
SELECT is(
  (SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'credit_transactions_check'),
  'CHECK (keen.credit_transactions_row_ok(transaction_type, amount, balance_before, balance_after, entry_no, idempotency_key, stripe_payment_intent_id))',
  'credit_transactions_check calls keen.credit_transactions_row_ok with the entry''s columns');
SELECT volatility_is('keen', 'credit_transactions_row_ok',
  ARRAY['text', 'numeric', 'numeric', 'numeric', 'bigint', 'text', 'text'], 'immutable',
  'keen.credit_transactions_row_ok is IMMUTABLE');
-- indexes
SELECT indexes_are('keen', 'credit_transactions', ARRAY[
    'credit_transactions_user_id_entry_no_key',
    'credit_transactions_user_id_idempotency_key_key',
    'credit_transactions_created_at_idx', 'credit_transactions_user_id_hold_id_key',
    'credit_transactions_pkey', 'credit_transactions_user_id_session_id_idx',
    'credit_transactions_user_id_stripe_payment_intent_id_key'],
  'keen.credit_transactions has exactly the expected indexes');
SELECT is((SELECT pg_get_indexdef('keen.credit_transactions_user_id_idempotency_key_key'::regclass)),
  'CREATE UNIQUE INDEX credit_transactions_user_id_idempotency_key_key ON keen.credit_transactions USING btree (user_id, idempotency_key) WHERE (idempotency_key IS NOT NULL)',
  'credit_transactions_user_id_idempotency_key_key: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.credit_transactions_created_at_idx'::regclass)),
  'CREATE INDEX credit_transactions_created_at_idx ON keen.credit_transactions USING brin (created_at) WITH (autosummarize=''on'')',
  'credit_transactions_created_at_idx: a BRIN index on created_at (the ledger is appended in time order)');
SELECT is((SELECT pg_get_indexdef('keen.credit_transactions_user_id_hold_id_key'::regclass)),
  'CREATE UNIQUE INDEX credit_transactions_user_id_hold_id_key ON keen.credit_transactions USING btree (user_id, hold_id) WHERE (hold_id IS NOT NULL)',
  'credit_transactions_user_id_hold_id_key: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.credit_transactions_user_id_session_id_idx'::regclass)),
  'CREATE INDEX credit_transactions_user_id_session_id_idx ON keen.credit_transactions USING btree (user_id, session_id) WHERE (session_id IS NOT NULL)',
  'credit_transactions_user_id_session_id_idx: its columns, order, uniqueness and predicate');
-- The listing reads the unique (user_id, entry_no) key backwards, newest entry first.
SELECT is((SELECT pg_get_indexdef('keen.credit_transactions_user_id_entry_no_key'::regclass)),
  'CREATE UNIQUE INDEX credit_transactions_user_id_entry_no_key ON keen.credit_transactions USING btree (user_id, entry_no)',
  'credit_transactions_user_id_entry_no_key: the key the listing reads (user_id, entry_no)');

-- ===== keen.credit_holds ==========================================================
SELECT has_table('keen', 'credit_holds', 'keen.credit_holds exists');
SELECT table_owner_is('keen', 'credit_holds', 'keen_owner', 'keen_owner owns keen.credit_holds');
SELECT columns_are('keen', 'credit_holds', ARRAY[
    'id', 'user_id', 'account_id', 'session_id', 'amount', 'captured_amount', 'status',
    'idempotency_key', 'request_fingerprint', 'expires_at', 'capture_transaction_id',
    'created_at', 'resolved_at'],
  'keen.credit_holds has exactly the expected columns');
SELECT col_type_is('keen', 'credit_holds', 'id', 'uuid', 'credit_holds.id is uuid');
SELECT col_not_null('keen', 'credit_holds', 'id', 'credit_holds.id is NOT NULL');
SELECT col_default_is('keen', 'credit_holds', 'id', 'gen_random_uuid()', 'credit_holds.id defaults to gen_random_uuid()');
SELECT col_type_is('keen', 'credit_holds', 'user_id', 'uuid', 'credit_holds.user_id is uuid');
SELECT col_not_null('keen', 'credit_holds', 'user_id', 'credit_holds.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_holds', 'user_id', 'credit_holds.user_id has no default');
SELECT col_type_is('keen', 'credit_holds', 'account_id', 'uuid', 'credit_holds.account_id is uuid');
SELECT col_not_null('keen', 'credit_holds', 'account_id', 'credit_holds.account_id is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_holds', 'account_id', 'credit_holds.account_id has no default');
SELECT col_type_is('keen', 'credit_holds', 'session_id', 'uuid', 'credit_holds.session_id is uuid');
SELECT col_is_null('keen', 'credit_holds', 'session_id', 'credit_holds.session_id is nullable');
SELECT col_hasnt_default('keen', 'credit_holds', 'session_id', 'credit_holds.session_id has no default');
SELECT col_type_is('keen', 'credit_holds', 'amount', 'numeric(12,4)', 'credit_holds.amount is numeric(12,4)');
SELECT col_not_null('keen', 'credit_holds', 'amount', 'credit_holds.amount is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_holds', 'amount', 'credit_holds.amount has no default');
SELECT col_type_is('keen', 'credit_holds', 'captured_amount', 'numeric(12,4)', 'credit_holds.captured_amount is numeric(12,4)');
SELECT col_is_null('keen', 'credit_holds', 'captured_amount', 'credit_holds.captured_amount is nullable');
SELECT col_hasnt_default('keen', 'credit_holds', 'captured_amount', 'credit_holds.captured_amount has no default');
SELECT col_type_is('keen', 'credit_holds', 'status', 'text', 'credit_holds.status is text');
SELECT col_not_null('keen', 'credit_holds', 'status', 'credit_holds.status is NOT NULL');
SELECT col_default_is('keen', 'credit_holds', 'status', 'active', 'credit_holds.status defaults to active');
SELECT col_type_is('keen', 'credit_holds', 'idempotency_key', 'text', 'credit_holds.idempotency_key is text');
SELECT col_is_null('keen', 'credit_holds', 'idempotency_key', 'credit_holds.idempotency_key is nullable');
SELECT col_hasnt_default('keen', 'credit_holds', 'idempotency_key', 'credit_holds.idempotency_key has no default');
SELECT col_type_is('keen', 'credit_holds', 'request_fingerprint', 'text', 'credit_holds.request_fingerprint is text');
SELECT col_is_null('keen', 'credit_holds', 'request_fingerprint', 'credit_holds.request_fingerprint is nullable');
SELECT col_hasnt_default('keen', 'credit_holds', 'request_fingerprint', 'credit_holds.request_fingerprint has no default');
SELECT col_type_is('keen', 'credit_holds', 'expires_at', 'timestamp with time zone', 'credit_holds.expires_at is timestamp with time zone');
SELECT col_not_null('keen', 'credit_holds', 'expires_at', 'credit_holds.expires_at is NOT NULL');
SELECT col_hasnt_default('keen', 'credit_holds', 'expires_at', 'credit_holds.expires_at has no default');
SELECT col_type_is('keen', 'credit_holds', 'capture_transaction_id', 'uuid', 'credit_holds.capture_transaction_id is uuid');
SELECT col_is_null('keen', 'credit_holds', 'capture_transaction_id', 'credit_holds.capture_transaction_id is nullable');
SELECT col_hasnt_default('keen', 'credit_holds', 'capture_transaction_id', 'credit_holds.capture_transaction_id has no default');
SELECT col_type_is('keen', 'credit_holds', 'created_at', 'timestamp with time zone', 'credit_holds.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'credit_holds', 'created_at', 'credit_holds.created_at is NOT NULL');
SELECT col_default_is('keen', 'credit_holds', 'created_at', 'now()', 'credit_holds.created_at defaults to now()');
SELECT col_type_is('keen', 'credit_holds', 'resolved_at', 'timestamp with time zone', 'credit_holds.resolved_at is timestamp with time zone');
SELECT col_is_null('keen', 'credit_holds', 'resolved_at', 'credit_holds.resolved_at is nullable');
SELECT col_hasnt_default('keen', 'credit_holds', 'resolved_at', 'credit_holds.resolved_at has no default');
-- keys
SELECT hasnt_index('keen', 'credit_holds', 'no UNIQUE (user_id, id) beside the primary key');
SELECT has_pk('keen', 'credit_holds', 'keen.credit_holds has a primary key');
SELECT col_is_pk('keen', 'credit_holds', ARRAY['user_id', 'id'], 'credit_holds_pkey: PRIMARY KEY (user_id, id)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'credit_holds', ARRAY['user_id', 'account_id'], 'keen', 'credit_accounts', ARRAY['user_id', 'id'],
  'credit_holds_account_fkey: (user_id, account_id) references keen.credit_accounts (user_id, id)');
SELECT is((SELECT count(*)::int FROM pg_constraint WHERE conname = 'credit_holds_capture_transaction_fkey'), 0,
  'no credit_holds_capture_transaction_fkey: Citus distributes no cycle of foreign keys (credit_transactions_hold_fkey is the other way)');
SELECT fk_ok('keen', 'credit_holds', ARRAY['user_id', 'session_id'], 'keen', 'agent_sessions', ARRAY['user_id', 'id'],
  'credit_holds_session_fkey: (user_id, session_id) references keen.agent_sessions (user_id, id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.credit_holds'::regclass AND contype = 'f'$$,
  $$VALUES
    ('credit_holds_account_fkey', 'FOREIGN KEY (user_id, account_id) REFERENCES keen.credit_accounts(user_id, id) ON DELETE RESTRICT'),
    ('credit_holds_session_fkey', 'FOREIGN KEY (user_id, session_id) REFERENCES keen.agent_sessions(user_id, id) ON DELETE RESTRICT')$$,
  'keen.credit_holds has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'credit_holds', 'keen.credit_holds has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.credit_holds'::regclass AND contype = 'c'$$,
  ARRAY[
    'credit_holds_amount_check', 'credit_holds_captured_check',
    'credit_holds_idempotency_key_check', 'credit_holds_resolved_check',
    'credit_holds_status_check'],
  'keen.credit_holds has exactly its named CHECK constraints');
-- indexes
SELECT indexes_are('keen', 'credit_holds', ARRAY[
    'credit_holds_user_id_active_idx', 'credit_holds_user_id_idempotency_key_key',
    'credit_holds_active_expires_at_idx', 'credit_holds_pkey',
    'credit_holds_user_id_session_id_idx'],
  'keen.credit_holds has exactly the expected indexes');
SELECT is((SELECT pg_get_indexdef('keen.credit_holds_user_id_active_idx'::regclass)),
  'CREATE INDEX credit_holds_user_id_active_idx ON keen.credit_holds USING btree (user_id) WHERE (status = ''active''::text)',
  'credit_holds_user_id_active_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.credit_holds_user_id_idempotency_key_key'::regclass)),
  'CREATE UNIQUE INDEX credit_holds_user_id_idempotency_key_key ON keen.credit_holds USING btree (user_id, idempotency_key) WHERE (idempotency_key IS NOT NULL)',
  'credit_holds_user_id_idempotency_key_key: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.credit_holds_active_expires_at_idx'::regclass)),
  'CREATE INDEX credit_holds_active_expires_at_idx ON keen.credit_holds USING btree (expires_at) WHERE (status = ''active''::text)',
  'credit_holds_active_expires_at_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.credit_holds_user_id_session_id_idx'::regclass)),
  'CREATE INDEX credit_holds_user_id_session_id_idx ON keen.credit_holds USING btree (user_id, session_id) WHERE (session_id IS NOT NULL)',
  'credit_holds_user_id_session_id_idx: its columns, order, uniqueness and predicate');

-- ===== keen.recharge_requests =====================================================
SELECT has_table('keen', 'recharge_requests', 'keen.recharge_requests exists');
SELECT table_owner_is('keen', 'recharge_requests', 'keen_owner', 'keen_owner owns keen.recharge_requests');
SELECT columns_are('keen', 'recharge_requests', ARRAY[
    'id', 'user_id', 'account_id', 'amount', 'status', 'triggered_by_transaction_id',
    'balance_at_request', 'attempts', 'failure_reason', 'purchase_transaction_id',
    'created_at', 'claimed_at', 'resolved_at'],
  'keen.recharge_requests has exactly the expected columns');
SELECT col_type_is('keen', 'recharge_requests', 'id', 'uuid', 'recharge_requests.id is uuid');
SELECT col_not_null('keen', 'recharge_requests', 'id', 'recharge_requests.id is NOT NULL');
SELECT col_default_is('keen', 'recharge_requests', 'id', 'gen_random_uuid()', 'recharge_requests.id defaults to gen_random_uuid()');
SELECT col_type_is('keen', 'recharge_requests', 'user_id', 'uuid', 'recharge_requests.user_id is uuid');
SELECT col_not_null('keen', 'recharge_requests', 'user_id', 'recharge_requests.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'recharge_requests', 'user_id', 'recharge_requests.user_id has no default');
SELECT col_type_is('keen', 'recharge_requests', 'account_id', 'uuid', 'recharge_requests.account_id is uuid');
SELECT col_not_null('keen', 'recharge_requests', 'account_id', 'recharge_requests.account_id is NOT NULL');
SELECT col_hasnt_default('keen', 'recharge_requests', 'account_id', 'recharge_requests.account_id has no default');
SELECT col_type_is('keen', 'recharge_requests', 'amount', 'numeric(12,4)', 'recharge_requests.amount is numeric(12,4)');
SELECT col_not_null('keen', 'recharge_requests', 'amount', 'recharge_requests.amount is NOT NULL');
SELECT col_hasnt_default('keen', 'recharge_requests', 'amount', 'recharge_requests.amount has no default');
SELECT col_type_is('keen', 'recharge_requests', 'status', 'text', 'recharge_requests.status is text');
SELECT col_not_null('keen', 'recharge_requests', 'status', 'recharge_requests.status is NOT NULL');
SELECT col_default_is('keen', 'recharge_requests', 'status', 'pending', 'recharge_requests.status defaults to pending');
SELECT col_type_is('keen', 'recharge_requests', 'triggered_by_transaction_id', 'uuid', 'recharge_requests.triggered_by_transaction_id is uuid');
SELECT col_not_null('keen', 'recharge_requests', 'triggered_by_transaction_id', 'recharge_requests.triggered_by_transaction_id is NOT NULL');
SELECT col_hasnt_default('keen', 'recharge_requests', 'triggered_by_transaction_id', 'recharge_requests.triggered_by_transaction_id has no default');
SELECT col_type_is('keen', 'recharge_requests', 'balance_at_request', 'numeric(12,4)', 'recharge_requests.balance_at_request is numeric(12,4)');
SELECT col_not_null('keen', 'recharge_requests', 'balance_at_request', 'recharge_requests.balance_at_request is NOT NULL');
SELECT col_hasnt_default('keen', 'recharge_requests', 'balance_at_request', 'recharge_requests.balance_at_request has no default');
SELECT col_type_is('keen', 'recharge_requests', 'attempts', 'integer', 'recharge_requests.attempts is integer');
SELECT col_not_null('keen', 'recharge_requests', 'attempts', 'recharge_requests.attempts is NOT NULL');
SELECT col_default_is('keen', 'recharge_requests', 'attempts', '0', 'recharge_requests.attempts defaults to 0');
SELECT col_type_is('keen', 'recharge_requests', 'failure_reason', 'text', 'recharge_requests.failure_reason is text');
SELECT col_is_null('keen', 'recharge_requests', 'failure_reason', 'recharge_requests.failure_reason is nullable');
SELECT col_hasnt_default('keen', 'recharge_requests', 'failure_reason', 'recharge_requests.failure_reason has no default');
SELECT col_type_is('keen', 'recharge_requests', 'purchase_transaction_id', 'uuid', 'recharge_requests.purchase_transaction_id is uuid');
SELECT col_is_null('keen', 'recharge_requests', 'purchase_transaction_id', 'recharge_requests.purchase_transaction_id is nullable');
SELECT col_hasnt_default('keen', 'recharge_requests', 'purchase_transaction_id', 'recharge_requests.purchase_transaction_id has no default');
SELECT col_type_is('keen', 'recharge_requests', 'created_at', 'timestamp with time zone', 'recharge_requests.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'recharge_requests', 'created_at', 'recharge_requests.created_at is NOT NULL');
SELECT col_default_is('keen', 'recharge_requests', 'created_at', 'now()', 'recharge_requests.created_at defaults to now()');
SELECT col_type_is('keen', 'recharge_requests', 'claimed_at', 'timestamp with time zone', 'recharge_requests.claimed_at is timestamp with time zone');
SELECT col_is_null('keen', 'recharge_requests', 'claimed_at', 'recharge_requests.claimed_at is nullable');
SELECT col_hasnt_default('keen', 'recharge_requests', 'claimed_at', 'recharge_requests.claimed_at has no default');
SELECT col_type_is('keen', 'recharge_requests', 'resolved_at', 'timestamp with time zone', 'recharge_requests.resolved_at is timestamp with time zone');
SELECT col_is_null('keen', 'recharge_requests', 'resolved_at', 'recharge_requests.resolved_at is nullable');
SELECT col_hasnt_default('keen', 'recharge_requests', 'resolved_at', 'recharge_requests.resolved_at has no default');
-- keys
SELECT hasnt_index('keen', 'recharge_requests', 'no UNIQUE (user_id, id) beside the primary key');
SELECT has_pk('keen', 'recharge_requests', 'keen.recharge_requests has a primary key');
SELECT col_is_pk('keen', 'recharge_requests', ARRAY['user_id', 'id'], 'recharge_requests_pkey: PRIMARY KEY (user_id, id)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'recharge_requests', ARRAY['user_id', 'account_id'], 'keen', 'credit_accounts', ARRAY['user_id', 'id'],
  'recharge_requests_account_fkey: (user_id, account_id) references keen.credit_accounts (user_id, id)');
SELECT fk_ok('keen', 'recharge_requests', ARRAY['user_id', 'purchase_transaction_id'], 'keen', 'credit_transactions', ARRAY['user_id', 'id'],
  'recharge_requests_purchase_fkey: (user_id, purchase_transaction_id) references keen.credit_transactions (user_id, id)');
SELECT fk_ok('keen', 'recharge_requests', ARRAY['user_id', 'triggered_by_transaction_id'], 'keen', 'credit_transactions', ARRAY['user_id', 'id'],
  'recharge_requests_triggered_by_fkey: (user_id, triggered_by_transaction_id) references keen.credit_transactions (user_id, id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.recharge_requests'::regclass AND contype = 'f'$$,
  $$VALUES
    ('recharge_requests_account_fkey', 'FOREIGN KEY (user_id, account_id) REFERENCES keen.credit_accounts(user_id, id) ON DELETE RESTRICT'),
    ('recharge_requests_purchase_fkey', 'FOREIGN KEY (user_id, purchase_transaction_id) REFERENCES keen.credit_transactions(user_id, id) ON DELETE RESTRICT'),
    ('recharge_requests_triggered_by_fkey', 'FOREIGN KEY (user_id, triggered_by_transaction_id) REFERENCES keen.credit_transactions(user_id, id) ON DELETE RESTRICT')$$,
  'keen.recharge_requests has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'recharge_requests', 'keen.recharge_requests has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.recharge_requests'::regclass AND contype = 'c'$$,
  ARRAY[
    'recharge_requests_amount_check', 'recharge_requests_attempts_check',
    'recharge_requests_failure_reason_check', 'recharge_requests_purchase_check',
    'recharge_requests_resolved_check', 'recharge_requests_status_check'],
  'keen.recharge_requests has exactly its named CHECK constraints');
-- indexes
SELECT indexes_are('keen', 'recharge_requests', ARRAY[
    'recharge_requests_user_id_open_key', 'recharge_requests_pending_created_at_idx',
    'recharge_requests_pkey'],
  'keen.recharge_requests has exactly the expected indexes');
SELECT is((SELECT pg_get_indexdef('keen.recharge_requests_user_id_open_key'::regclass)),
  'CREATE UNIQUE INDEX recharge_requests_user_id_open_key ON keen.recharge_requests USING btree (user_id) WHERE (status = ANY (ARRAY[''pending''::text, ''processing''::text]))',
  'recharge_requests_user_id_open_key: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.recharge_requests_pending_created_at_idx'::regclass)),
  'CREATE INDEX recharge_requests_pending_created_at_idx ON keen.recharge_requests USING btree (created_at) WHERE (status = ''pending''::text)',
  'recharge_requests_pending_created_at_idx: its columns, order, uniqueness and predicate');

SELECT * FROM finish();
ROLLBACK;
