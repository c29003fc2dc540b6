-- Data rules of credit_accounts, credit_transactions, credit_holds and recharge_requests:
-- every row that breaks one fails with its constraint's SQLSTATE and name, and writes nothing.
BEGIN;
SELECT plan(65);

-- ===== fixtures (as the owner) ===============================================
-- The constraints are the last line of defence under the functions and triggers (whose
-- behaviour the domain's own test files cover): with this transaction's triggers off,
-- each rule below is proved by its constraint alone.
ALTER TABLE keen.users DISABLE TRIGGER USER;
ALTER TABLE keen.agent_sessions DISABLE TRIGGER USER;
ALTER TABLE keen.credit_accounts DISABLE TRIGGER USER;
ALTER TABLE keen.credit_transactions DISABLE TRIGGER USER;
ALTER TABLE keen.credit_holds DISABLE TRIGGER USER;
ALTER TABLE keen.recharge_requests DISABLE TRIGGER USER;
-- alice and bob each have an account and a session; carol has no account yet; alice's
-- ledger holds one purchase of 100.
INSERT INTO keen.users (id, email, username, password_hash) VALUES
  ('00000000-0000-4000-8000-00000000a11c', 'alice@example.com', 'alice', repeat('a', 32)),
  ('00000000-0000-4000-8000-000000000b0b', 'bob@example.com', 'bob', repeat('b', 32)),
  ('00000000-0000-4000-8000-000000000cc0', 'carol@example.com', 'carol', repeat('c', 32));
INSERT INTO keen.credit_accounts (id, user_id) VALUES
  ('00000000-0000-4000-8000-00000000ac0a', '00000000-0000-4000-8000-00000000a11c'),
  ('00000000-0000-4000-8000-00000000ac0b', '00000000-0000-4000-8000-000000000b0b');
INSERT INTO keen.agent_sessions (id, user_id, session_id, git_branch, vision, working_directory) VALUES
  ('00000000-0000-4000-8000-00000005a001', '00000000-0000-4000-8000-00000000a11c', 'a-root', 'main', 'v', '/w'),
  ('00000000-0000-4000-8000-00000005b001', '00000000-0000-4000-8000-000000000b0b', 'b-root', 'main', 'v', '/w');
INSERT INTO keen.credit_transactions (id, user_id, account_id, entry_no, transaction_type, amount,
                                      balance_before, balance_after, description, idempotency_key,
                                      stripe_payment_intent_id)
VALUES ('00000000-0000-4000-8000-0000000c0001', '00000000-0000-4000-8000-00000000a11c',
        '00000000-0000-4000-8000-00000000ac0a', 1, 'purchase', 100, 0, 100, 'fixture', 'key-1', 'pi_1');

INSERT INTO keen.credit_holds (id, user_id, account_id, amount, expires_at) VALUES
  ('00000000-0000-4000-8000-0000000d0a01', '00000000-0000-4000-8000-00000000a11c',
   '00000000-0000-4000-8000-00000000ac0a', 5, now() + interval '1 hour'),
  ('00000000-0000-4000-8000-0000000d0b01', '00000000-0000-4000-8000-000000000b0b',
   '00000000-0000-4000-8000-00000000ac0b', 5, now() + interval '1 hour');

-- ===== credit_transactions: the ledger =======================================
SELECT lives_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount,
                                          balance_before, balance_after, description, session_id)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 2, 'usage', -10, 100, 90, 'u', '00000000-0000-4000-8000-00000005a001'),
           ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 3, 'refund', 5, 90, 95, 'r', NULL),
           ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 4, 'adjustment', -0.0001, 95, 94.9999, 'a', NULL)$$,
  'the ledger accepts every listed transaction type with its sign');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'admin_bypass', 1, 100, 101, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'an unknown transaction type is refused (the original''s admin_bypass included)');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'adjustment', 0, 100, 100, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'a zero amount is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'adjustment', 'NaN', 'NaN', 'NaN', 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'a NaN amount is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'usage', 10, 100, 110, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'usage takes credits out: a positive usage is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'purchase', -10, 100, 90, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'a purchase brings credits in: a negative purchase is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'usage', -10, 100, 80, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'balance_after is balance_before plus the amount');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'usage', -150, 100, -50, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'no entry takes the balance below zero');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'refund', -5, 100, 95, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'a refund brings credits in: a negative refund is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'usage', 0, 100, 100, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'a zero usage is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'adjustment', 1, 'NaN', 'NaN', 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'NaN balances are refused (NaN = NaN + 1 and NaN >= 0 would pass)');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'purchase', 'NaN', 100, 'NaN', 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'a NaN purchase is refused (NaN > 0 would pass)');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0b', 9, 'purchase', 10, 0, 10, 'x')$$,
  '23503', 'insert or update on table "credit_transactions" violates foreign key constraint "credit_transactions_account_fkey"',
  'an entry cannot be booked on another user''s account');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description, session_id)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'usage', -1, 100, 99, 'x', '00000000-0000-4000-8000-00000005b001')$$,
  '23503', 'insert or update on table "credit_transactions" violates foreign key constraint "credit_transactions_session_fkey"',
  'an entry cannot pay for another user''s session');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description, hold_id)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'usage', -1, 100, 99, 'x', '00000000-0000-4000-8000-0000000d0b01')$$,
  '23503', 'insert or update on table "credit_transactions" violates foreign key constraint "credit_transactions_hold_fkey"',
  'an entry cannot capture another user''s hold');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description, hold_id)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 8, 'usage', -1, 100, 99, 'x', '00000000-0000-4000-8000-0000000d0a01'),
           ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'usage', -1, 99, 98, 'x', '00000000-0000-4000-8000-0000000d0a01')$$,
  '23505', 'duplicate key value violates unique constraint "credit_transactions_user_id_hold_id_key"',
  'a hold is captured by one ledger entry at most');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 1, 'purchase', 10, 100, 110, 'x')$$,
  '23505', 'duplicate key value violates unique constraint "credit_transactions_user_id_entry_no_key"',
  'an entry number is used once per account');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 0, 'purchase', 10, 100, 110, 'x')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'entry numbers start at 1');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description, idempotency_key)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'purchase', 10, 100, 110, 'x', 'key-1')$$,
  '23505', 'duplicate key value violates unique constraint "credit_transactions_user_id_idempotency_key_key"',
  'an idempotency key is used once per account');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description, stripe_payment_intent_id)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'purchase', 10, 100, 110, 'x', 'pi_1')$$,
  '23505', 'duplicate key value violates unique constraint "credit_transactions_user_id_stripe_payment_intent_id_key"',
  'a Stripe payment is credited once per tenant (the key leads with user_id)');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after, description, idempotency_key)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 9, 'purchase', 10, 100, 110, 'x', '')$$,
  '23514', 'new row for relation "credit_transactions" violates check constraint "credit_transactions_check"',
  'an empty idempotency key is refused');

-- ===== credit_accounts ========================================================
SELECT lives_ok(
  $$INSERT INTO keen.credit_accounts (user_id, account_status, suspended_reason)
    VALUES ('00000000-0000-4000-8000-000000000cc0', 'closed', 'test')$$,
  'an account may be closed with a reason');
DELETE FROM keen.credit_accounts WHERE user_id = '00000000-0000-4000-8000-000000000cc0';
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id) VALUES ('00000000-0000-4000-8000-00000000a11c')$$,
  '23505', 'duplicate key value violates unique constraint "credit_accounts_user_id_key"',
  'a user has one credit account');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, current_balance) VALUES ('00000000-0000-4000-8000-000000000cc0', -1)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a negative balance is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, current_balance) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN balance is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, current_balance, held_amount) VALUES ('00000000-0000-4000-8000-000000000cc0', 10, 11)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'holds cannot exceed the balance: available never goes below zero');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, lifetime_spent) VALUES ('00000000-0000-4000-8000-000000000cc0', -1)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'lifetime totals cannot be negative');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, daily_limit) VALUES ('00000000-0000-4000-8000-000000000cc0', 0)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a daily limit is positive or absent');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, monthly_limit) VALUES ('00000000-0000-4000-8000-000000000cc0', -5)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a monthly limit is positive or absent');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, held_amount) VALUES ('00000000-0000-4000-8000-000000000cc0', -1)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a negative held amount is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, lifetime_purchased) VALUES ('00000000-0000-4000-8000-000000000cc0', -1)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a negative lifetime purchased total is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, lifetime_purchased) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN lifetime total is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, lifetime_spent) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN lifetime spent total is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, daily_limit) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN daily limit is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, monthly_limit) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN monthly limit is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, daily_limit, monthly_limit) VALUES ('00000000-0000-4000-8000-000000000cc0', NULL, 0)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a zero monthly limit is refused beside an absent daily limit');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, auto_recharge_threshold) VALUES ('00000000-0000-4000-8000-000000000cc0', -1)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a negative auto-recharge threshold is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, last_entry_no) VALUES ('00000000-0000-4000-8000-000000000cc0', -1)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a negative last entry number is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, spent_today) VALUES ('00000000-0000-4000-8000-000000000cc0', -1)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a negative day''s spending counter is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, spent_this_month) VALUES ('00000000-0000-4000-8000-000000000cc0', -1)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a negative month''s spending counter is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, auto_recharge_threshold) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN auto-recharge threshold is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, auto_recharge_amount) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN auto-recharge amount is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, spent_today) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN day''s spending counter is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, spent_this_month) VALUES ('00000000-0000-4000-8000-000000000cc0', 'NaN')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'a NaN month''s spending counter is refused');
SELECT lives_ok(
  $$INSERT INTO keen.credit_accounts (user_id, current_balance, held_amount, daily_limit, monthly_limit, auto_recharge_threshold)
    VALUES ('00000000-0000-4000-8000-000000000cc0', 0, 0, 0.0001, NULL, 0)$$,
  'the figures'' edges are accepted: zero balance and holds, the smallest limit, an absent limit, a zero threshold');
DELETE FROM keen.credit_accounts WHERE user_id = '00000000-0000-4000-8000-000000000cc0';
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, account_status) VALUES ('00000000-0000-4000-8000-000000000cc0', 'frozen')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'an unknown account status is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, suspended_reason) VALUES ('00000000-0000-4000-8000-000000000cc0', 'why')$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'an active account has no suspension reason');
SELECT throws_ok(
  $$INSERT INTO keen.credit_accounts (user_id, auto_recharge_amount) VALUES ('00000000-0000-4000-8000-000000000cc0', 0)$$,
  '23514', 'new row for relation "credit_accounts" violates check constraint "credit_accounts_check"',
  'an auto-recharge amount is positive');

-- ===== credit_holds ==========================================================
SELECT lives_ok(
  $$INSERT INTO keen.credit_holds (user_id, account_id, amount, status, expires_at, resolved_at, captured_amount)
    SELECT '00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 5, s,
           now() + interval '1 hour', CASE WHEN s <> 'active' THEN now() END, CASE WHEN s = 'captured' THEN 5 END
    FROM unnest(ARRAY['active', 'captured', 'released', 'expired']) AS s$$,
  'holds accept every status');
SELECT throws_ok(
  $$INSERT INTO keen.credit_holds (user_id, account_id, amount, expires_at)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 0, now() + interval '1 hour')$$,
  '23514', 'new row for relation "credit_holds" violates check constraint "credit_holds_amount_check"',
  'a hold of zero is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_holds (user_id, account_id, amount, expires_at, status, resolved_at)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 1, now() + interval '1 hour', 'pending', now())$$,
  '23514', 'new row for relation "credit_holds" violates check constraint "credit_holds_status_check"',
  'an unknown hold status is refused');
SELECT throws_ok(
  $$INSERT INTO keen.credit_holds (user_id, account_id, amount, expires_at)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0b', 1, now() + interval '1 hour')$$,
  '23503', 'insert or update on table "credit_holds" violates foreign key constraint "credit_holds_account_fkey"',
  'a hold cannot reserve another user''s credits');
SELECT throws_ok(
  $$INSERT INTO keen.credit_holds (user_id, account_id, amount, expires_at, session_id)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 1, now() + interval '1 hour', '00000000-0000-4000-8000-00000005b001')$$,
  '23503', 'insert or update on table "credit_holds" violates foreign key constraint "credit_holds_session_fkey"',
  'a hold cannot be taken for another user''s session');
SELECT throws_ok(
  $$INSERT INTO keen.credit_holds (user_id, account_id, amount, expires_at, status, resolved_at, captured_amount)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 1, now() + interval '1 hour', 'captured', now(), 2)$$,
  '23514', 'new row for relation "credit_holds" violates check constraint "credit_holds_captured_check"',
  'a hold cannot capture more than it reserved');
SELECT throws_ok(
  $$INSERT INTO keen.credit_holds (user_id, account_id, amount, expires_at, status)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 1, now() + interval '1 hour', 'released')$$,
  '23514', 'new row for relation "credit_holds" violates check constraint "credit_holds_resolved_check"',
  'a resolved hold records when');

-- ===== recharge_requests =====================================================
SELECT lives_ok(
  $$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id, balance_at_request)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 50, '00000000-0000-4000-8000-0000000c0001', 5)$$,
  'a pending recharge request is recorded');
SELECT throws_ok(
  $$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id, balance_at_request)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 50, '00000000-0000-4000-8000-0000000c0001', 5)$$,
  '23505', 'duplicate key value violates unique constraint "recharge_requests_user_id_open_key"',
  'an account has at most one open recharge request');
SELECT throws_ok(
  $$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id, balance_at_request, status, resolved_at)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 50, '00000000-0000-4000-8000-0000000c0001', 5, 'queued', NULL)$$,
  '23514', 'new row for relation "recharge_requests" violates check constraint "recharge_requests_status_check"',
  'an unknown recharge status is refused');
SELECT throws_ok(
  $$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id, balance_at_request, status, resolved_at)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 0, '00000000-0000-4000-8000-0000000c0001', 5, 'failed', now())$$,
  '23514', 'new row for relation "recharge_requests" violates check constraint "recharge_requests_amount_check"',
  'a recharge of zero is refused');
SELECT throws_ok(
  $$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id, balance_at_request, status, resolved_at)
    VALUES ('00000000-0000-4000-8000-000000000b0b', '00000000-0000-4000-8000-00000000ac0b', 50, '00000000-0000-4000-8000-0000000c0001', 5, 'failed', now())$$,
  '23503', 'insert or update on table "recharge_requests" violates foreign key constraint "recharge_requests_triggered_by_fkey"',
  'a recharge cannot be triggered by another user''s ledger entry');

SELECT throws_ok(
  $$INSERT INTO keen.recharge_requests (user_id, account_id, amount, triggered_by_transaction_id, balance_at_request, status, resolved_at)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000ac0a', 50, '00000000-0000-4000-8000-0000000c0001', 5, 'completed', now())$$,
  '23514', 'new row for relation "recharge_requests" violates check constraint "recharge_requests_purchase_check"',
  'a completed recharge names the purchase that credited it');

-- ===== deleting ==============================================================
SELECT throws_ok(
  $$DELETE FROM keen.users WHERE id = '00000000-0000-4000-8000-00000000a11c'$$,
  '23503', NULL,
  'a user with ledger entries cannot be deleted: money history is kept (close the account instead)');

-- ===== nothing was written by the refused rows ================================
SELECT is((SELECT count(*) FROM keen.credit_transactions), 4::bigint,
  'the ledger holds only the fixture and the accepted entries');
SELECT is((SELECT count(*) FROM keen.credit_accounts), 2::bigint,
  'credit_accounts holds only the fixtures');
SELECT is((SELECT count(*) FROM keen.credit_holds) + (SELECT count(*) FROM keen.recharge_requests), 7::bigint,
  'credit_holds and recharge_requests hold only the fixtures and the accepted rows');

SELECT * FROM finish();
ROLLBACK;
