-- Credits: the ledger, deductions, purchases, holds, limits, auto-recharge, append-only and
-- the guards that keep every invariant whoever writes. One assertion per rule.
BEGIN;
SELECT plan(184);

-- ===== fixtures (as the owner) ===============================================
-- alice (UTC) and bob are ordinary tenants; carol lives at UTC+14 and has limits; dave holds
-- credits; erin auto-recharges; frank is corrupted on purpose for verify_ledger().
INSERT INTO keen.users (id, email, username, password_hash, timezone) VALUES
  ('00000000-0000-4000-8000-0000000c0a01', 'c-alice@example.com', 'c-alice', repeat('a', 32), 'UTC'),
  ('00000000-0000-4000-8000-0000000c0b01', 'c-bob@example.com', 'c-bob', repeat('b', 32), 'UTC'),
  ('00000000-0000-4000-8000-0000000c0c01', 'c-carol@example.com', 'c-carol', repeat('c', 32), 'Pacific/Kiritimati'),
  ('00000000-0000-4000-8000-0000000c0d01', 'c-dave@example.com', 'c-dave', repeat('d', 32), 'UTC'),
  ('00000000-0000-4000-8000-0000000c0e01', 'c-erin@example.com', 'c-erin', repeat('e', 32), 'UTC'),
  ('00000000-0000-4000-8000-0000000c0f01', 'c-frank@example.com', 'c-frank', repeat('f', 32), 'UTC');
-- register_user may already have opened the accounts; otherwise open them here.
INSERT INTO keen.credit_accounts (user_id)
SELECT u.id FROM keen.users AS u WHERE u.username LIKE 'c-%'
ON CONFLICT (user_id) DO NOTHING;
INSERT INTO keen.agent_sessions (id, user_id, session_id, git_branch, vision, working_directory) VALUES
  ('00000000-0000-4000-8000-0000000c5a01', '00000000-0000-4000-8000-0000000c0a01', 'c-a-root', 'main', 'v', '/w'),
  ('00000000-0000-4000-8000-0000000c5b01', '00000000-0000-4000-8000-0000000c0b01', 'c-b-root', 'main', 'v', '/w');
GRANT USAGE ON SCHEMA tap TO keen_app, keen_owner;
SET LOCAL client_min_messages = warning;

-- ===== structure =============================================================
SELECT has_function('keen', 'deduct_credits', ARRAY['numeric', 'uuid', 'text', 'text'], 'deduct_credits(p_amount, p_session_id, p_description, p_idempotency_key) exists');
SELECT has_function('keen', 'add_credits', ARRAY['numeric', 'text', 'text', 'text', 'text', 'jsonb'], 'add_credits(p_amount, p_transaction_type, p_description, p_idempotency_key, p_stripe_payment_intent_id, p_metadata) exists');
SELECT has_function('keen', 'hold_credits', ARRAY['uuid', 'numeric', 'text', 'interval'], 'hold_credits(p_session_id, p_amount, p_idempotency_key, p_expires_in) exists');
SELECT has_function('keen', 'capture_hold', ARRAY['uuid', 'numeric', 'text'], 'capture_hold(p_hold_id, p_amount, p_description) exists');
SELECT has_function('keen', 'release_hold', ARRAY['uuid'], 'release_hold(p_hold_id) exists');
SELECT function_returns('keen', 'deduct_credits', ARRAY['numeric', 'uuid', 'text', 'text'], 'keen.credit_transactions', 'deduct_credits returns the ledger row type');
SELECT function_returns('keen', 'hold_credits', ARRAY['uuid', 'numeric', 'text', 'interval'], 'keen.credit_holds', 'hold_credits returns the hold row type');
SELECT set_eq($$SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'keen' AND p.prosecdef
                   AND (p.proname LIKE '%credit%' OR p.proname LIKE '%hold%' OR p.proname LIKE '%recharge%'
                        OR p.proname LIKE '%spending%' OR p.proname IN ('verify_ledger', 'round_cost', 'in_migration'))$$,
  ARRAY['add_credits', 'capture_hold', 'configure_auto_recharge', 'deduct_credits', 'hold_credits', 'release_hold',
        'set_spending_limits', 'credit_balance', 'check_credits', 'list_credit_transactions'],
  'the credit functions keen_app calls are SECURITY DEFINER: the writers (the only ones) and, since 0019, the readers (one connection user per transaction on Citus); the helpers run as the invoker');
SELECT ok(NOT EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE n.nspname = 'keen'
                         AND p.proname IN ('deduct_credits', 'add_credits', 'hold_credits', 'capture_hold',
                                           'release_hold', 'extend_hold', 'post_credit')
                         AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)),
  'the money movements pin search_path to pg_catalog, pg_temp');
SELECT function_privs_are('keen', 'deduct_credits', ARRAY['numeric', 'uuid', 'text', 'text'], 'keen_app', ARRAY['EXECUTE'], 'keen_app may execute deduct_credits');
SELECT function_privs_are('keen', 'verify_ledger', '{}'::text[], 'keen_app', '{}'::text[], 'keen_app may not execute verify_ledger (operators only)');
SELECT function_privs_are('keen', 'sweep_expired_holds', '{}'::text[], 'keen_app', '{}'::text[], 'keen_app may not execute sweep_expired_holds (operators only)');
SELECT function_privs_are('keen', 'complete_recharge_request', ARRAY['uuid', 'text'], 'keen_app', '{}'::text[], 'keen_app may not complete recharge requests (billing operators only)');
SELECT table_privs_are('keen', 'credit_transactions', 'keen_app', ARRAY['SELECT'], 'keen_app may only read the ledger (the movements append)');
SELECT has_trigger('keen', 'credit_transactions', '_010_append_only', 'the ledger has a row trigger refusing UPDATE and DELETE');
SELECT has_trigger('keen', 'credit_transactions', '_010_append_only_truncate', 'the ledger has a statement trigger refusing TRUNCATE');
SELECT table_privs_are('keen', 'credit_accounts', 'keen_app', ARRAY['SELECT'], 'keen_app may only read its account (the movements write it)');
SELECT table_privs_are('keen', 'credit_holds', 'keen_app', ARRAY['SELECT'], 'keen_app may only read its holds');
SELECT function_privs_are('keen', 'extend_hold', ARRAY['uuid', 'uuid', 'numeric'], 'keen_app', '{}'::text[],
  'keen_app may not execute extend_hold (internal: called by definer functions)');
SELECT has_index('keen', 'credit_transactions', 'credit_transactions_user_id_idempotency_key_key', 'idempotency keys are unique per tenant (so per account) by an index');

-- ===== as the owner: purchases and deductions ================================
SET LOCAL ROLE keen_app;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0a01';
SELECT results_eq(
  $$SELECT entry_no, transaction_type, amount, balance_before, balance_after FROM keen.add_credits(p_amount => 10)$$,
  $$VALUES (1::bigint, 'purchase', 10.0000::numeric, 0.0000::numeric, 10.0000::numeric)$$,
  'add_credits appends entry 1 of type purchase with the previous and new balance');
SELECT results_eq(
  $$SELECT entry_no, transaction_type, amount, balance_before, balance_after, session_id, idempotency_key
      FROM keen.deduct_credits(p_amount => 2.5, p_session_id => '00000000-0000-4000-8000-0000000c5a01',
                               p_idempotency_key => 'a-1')$$,
  $$VALUES (2::bigint, 'usage', -2.5000::numeric, 10.0000::numeric, 7.5000::numeric,
            '00000000-0000-4000-8000-0000000c5a01'::uuid, 'a-1')$$,
  'deduct_credits appends a usage entry carrying the session uuid and the idempotency key');
SELECT is((SELECT current_balance FROM keen.credit_accounts), 7.5000::numeric, 'the account balance follows the ledger');
SELECT is((SELECT id FROM keen.credit_transactions WHERE idempotency_key = 'a-1'),
          md5((SELECT id FROM keen.credit_accounts)::text || ':entry:a-1')::uuid,
          'the entry id is derived from the account and the idempotency key');
SELECT is((SELECT id FROM keen.deduct_credits(p_amount => 2.5, p_session_id => '00000000-0000-4000-8000-0000000c5a01', p_idempotency_key => 'a-1')),
          (SELECT id FROM keen.credit_transactions WHERE idempotency_key = 'a-1'),
          'a retried key with the same arguments returns the original entry');
SELECT results_eq($$SELECT count(*), min(current_balance) FROM keen.credit_transactions, keen.credit_accounts$$,
                  $$VALUES (2::bigint, 7.5000::numeric)$$, 'a retried key charges nothing more and appends nothing');
SELECT is((SELECT id FROM keen.deduct_credits(p_amount => 2.50, p_session_id => '00000000-0000-4000-8000-0000000c5a01', p_idempotency_key => 'a-1')),
          (SELECT id FROM keen.credit_transactions WHERE idempotency_key = 'a-1'),
          'the same amount written with another scale (2.50) is the same argument');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 3, p_idempotency_key => 'a-1')$$, 'KE005', NULL,
  'a key reused with another amount raises KE005');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 2.5, p_idempotency_key => 'a-1')$$, 'KE005', NULL,
  'a deduction key reused for a purchase raises KE005');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 100)$$, 'KE001', NULL,
  'a deduction beyond the balance raises KE001');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 100, p_idempotency_key => 'a-2')$$, 'KE001', NULL,
  'a failed call raises KE001 ...');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 100, p_idempotency_key => 'a-topup')$$, '... credits are added ...');
SELECT is((SELECT amount FROM keen.deduct_credits(p_amount => 100, p_idempotency_key => 'a-2')), -100.0000::numeric,
  '... and the same key then succeeds: a failed call does not pin its key');
SELECT is((SELECT current_balance FROM keen.credit_accounts), 7.5000::numeric, 'balance after the retried key is 7.5');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1, p_idempotency_key => '')$$, 'KE013', NULL,
  'an empty idempotency key raises KE013');

-- amounts
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 0)$$, 'KE004', NULL, 'a zero amount raises KE004');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => -1)$$, 'KE004', NULL, 'a negative amount raises KE004');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 'NaN')$$, 'KE004', NULL, 'NaN raises KE004');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 'Infinity')$$, 'KE004', NULL, 'Infinity raises KE004');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 0.00001)$$, 'KE004', NULL, 'more than 4 decimal places raises KE004');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 100000000)$$, 'KE004', NULL, 'an amount beyond numeric(12,4) raises KE004');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => NULL)$$, 'KE004', NULL, 'a NULL amount raises KE004');
SELECT is((SELECT amount FROM keen.deduct_credits(p_amount => 1.23450)), -1.2345::numeric,
  'trailing zeros beyond 4 places are accepted: the value has 4 places');

-- purchases, refunds, payment intents
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 1, p_transaction_type => 'usage')$$, 'KE013', NULL,
  'add_credits refuses the usage type with KE013');
SELECT is((SELECT lifetime_purchased FROM keen.credit_accounts), 110.0000::numeric, 'lifetime_purchased counts purchases');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 1.2345, p_transaction_type => 'refund', p_description => 'failed run')$$,
  'a refund adds credits');
SELECT results_eq($$SELECT lifetime_purchased, lifetime_spent FROM keen.credit_accounts$$,
                  $$VALUES (110.0000::numeric, 103.7345::numeric)$$,
  'a refund changes neither lifetime_purchased nor lifetime_spent');
SELECT is((SELECT id FROM keen.add_credits(p_amount => 5, p_stripe_payment_intent_id => 'pi_alice_1')),
          (SELECT id FROM keen.add_credits(p_amount => 5, p_stripe_payment_intent_id => 'pi_alice_1')),
          'a payment intent is credited once: without a key it acts as the key');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 6, p_stripe_payment_intent_id => 'pi_alice_1')$$, 'KE005', NULL,
  'the same payment intent with another amount raises KE005');

-- check_credits and credit_balance
SELECT results_eq($$SELECT sufficient, current_balance, available_balance, required, shortfall FROM keen.check_credits(20)$$,
                  $$VALUES (false, 12.5000::numeric, 12.5000::numeric, 20::numeric, 7.5000::numeric)$$,
  'check_credits reports the shortfall of an amount beyond the available balance');
SELECT is((SELECT sufficient FROM keen.check_credits(12.5)), true, 'check_credits: the whole available balance is sufficient');
SELECT throws_ok($$SELECT keen.check_credits(-1)$$, 'KE004', NULL, 'check_credits validates the amount: KE004');
SELECT results_eq($$SELECT current_balance, held_amount, available_balance, lifetime_purchased, lifetime_spent,
                           spent_today, spent_this_month, daily_limit, monthly_limit FROM keen.credit_balance()$$,
                  $$VALUES (12.5000::numeric, 0::numeric, 12.5000::numeric, 115.0000::numeric, 103.7345::numeric,
                            103.7345::numeric, 103.7345::numeric, NULL::numeric, NULL::numeric)$$,
  'credit_balance returns balance, holds, lifetime totals, spending today and this month, and limits');

-- rounding of session costs
SELECT is(keen.round_cost(0.000101), 0.0002::numeric, 'round_cost rounds a 6-place cost up to 4 places');
SELECT is(keen.round_cost(1.5), 1.5::numeric, 'round_cost keeps a cost that has 4 places');
SELECT ok((SELECT bool_and(keen.round_cost(c) >= c AND keen.round_cost(c) - c < 0.0001)
             FROM (SELECT n / 1000000.0 AS c FROM generate_series(0, 20000, 7) AS n) AS s),
  'round_cost is never below the cost and less than one unit (0.0001) above it');
SELECT throws_ok($$SELECT keen.round_cost(-0.000001)$$, 'KE004', NULL, 'a negative cost raises KE004');

-- sessions and account state
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1, p_session_id => '00000000-0000-4000-8000-0000000c5b01')$$,
  'KE006', NULL, 'charging another tenant''s session raises KE006');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1, p_session_id => gen_random_uuid())$$,
  'KE006', NULL, 'charging an unknown session raises KE006');

-- ===== as the owner: only the movements write (keen_app holds SELECT alone) =====
SELECT throws_ok($$UPDATE keen.credit_accounts SET current_balance = current_balance + 1000$$, '42501', NULL,
  'a direct UPDATE of the balance by the service is refused');
SELECT throws_ok($$UPDATE keen.credit_accounts SET current_balance = 1000, last_entry_no = last_entry_no + 1$$, '42501', NULL,
  'a direct balance UPDATE with a made-up entry number is refused');
SELECT throws_ok($$UPDATE keen.credit_accounts SET lifetime_spent = 0$$, '42501', NULL,
  'a direct UPDATE of lifetime totals is refused');
SELECT throws_ok($$UPDATE keen.credit_accounts SET spent_today = 0$$, '42501', NULL,
  'a direct reset of the spending counter is refused (limits cannot be dodged)');
SELECT throws_ok($$UPDATE keen.credit_accounts SET held_amount = 0.5$$, '42501', NULL,
  'a direct UPDATE of held_amount is refused');
SET LOCAL ROLE keen_app;
-- A guard that trusted pg_trigger_depth() > 1 could be fooled by a temp table with a trigger
-- of the service's own, whose UPDATE then runs at depth 2: the service creates no temp table.
SELECT throws_ok($$CREATE TEMP TABLE forge (x integer)$$, '42501', NULL,
  'the service cannot create a temp table (so no trigger of its own runs at depth 2)');
SELECT throws_ok($$UPDATE keen.credit_accounts SET account_status = 'suspended', suspended_reason = 'x'$$, '42501', NULL,
  'the service cannot change its account''s status');
SELECT throws_ok($$UPDATE keen.credit_accounts SET daily_limit = NULL$$, '42501', NULL,
  'settings too are written only through their functions (set_spending_limits)');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, transaction_type, amount, description)
    SELECT user_id, id, 'usage', -0.5, 'direct insert' FROM keen.credit_accounts$$,
  '42501', NULL, 'a direct ledger INSERT by the service is refused: deduct_credits posts entries');
SELECT results_eq($$SELECT current_balance, last_entry_no FROM keen.credit_accounts$$,
                  $$SELECT balance_after, entry_no FROM keen.credit_transactions ORDER BY entry_no DESC LIMIT 1$$,
  'the account follows its newest entry: balance and entry number');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 0.5, p_description => 'after the refusals')$$,
  'the movements still write for the service');
SELECT throws_ok($$UPDATE keen.credit_transactions SET amount = -0.01 WHERE entry_no = 2$$, '42501', NULL,
  'the service cannot UPDATE ledger rows');
SELECT throws_ok($$DELETE FROM keen.credit_transactions$$, '42501', NULL, 'the service cannot DELETE ledger rows');
SELECT throws_ok($$TRUNCATE keen.credit_transactions$$, '42501', NULL, 'the service cannot TRUNCATE the ledger');
SELECT throws_ok($$SELECT keen.in_migration()$$, '42501', NULL,
  'the service cannot even ask whether it is a migration (in_migration is not granted to keen_app)');

-- ===== as another tenant =====================================================
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0b01';
SELECT is_empty($$SELECT id FROM keen.credit_transactions WHERE user_id = '00000000-0000-4000-8000-0000000c0a01'$$,
  'another tenant sees none of alice''s ledger rows');
SELECT is((SELECT count(*) FROM keen.credit_accounts), 1::bigint, 'another tenant sees only its own account');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'KE001', NULL,
  'bob''s empty account cannot pay (alice''s balance is not his)');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 3, p_idempotency_key => 'a-1')$$,
  'idempotency keys are per account: bob may use alice''s key');
SELECT throws_ok(
  $$INSERT INTO keen.credit_transactions (user_id, account_id, transaction_type, amount, description)
    SELECT '00000000-0000-4000-8000-0000000c0a01', id, 'purchase', 1, 'x' FROM keen.credit_accounts$$,
  '42501', NULL, 'bob cannot post to alice''s account (nor to his own) directly');

-- ===== holds (dave) ==========================================================
RESET ROLE;
SET LOCAL ROLE keen_app;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0d01';
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 10)$$, 'dave buys 10');
SELECT results_eq($$SELECT status, amount, expires_at - created_at FROM keen.hold_credits(p_amount => 6, p_idempotency_key => 'h-1')$$,
                  $$VALUES ('active', 6.0000::numeric, interval '1 hour')$$,
  'hold_credits reserves an amount, expiring after the default hour');
SELECT results_eq($$SELECT current_balance, held_amount, available_balance FROM keen.credit_balance()$$,
                  $$VALUES (10.0000::numeric, 6.0000::numeric, 4.0000::numeric)$$,
  'a hold reduces the available balance, not the balance');
SELECT is((SELECT id FROM keen.hold_credits(p_amount => 6, p_idempotency_key => 'h-1')),
          md5((SELECT id FROM keen.credit_accounts)::text || ':hold:h-1')::uuid,
          'a retried hold key returns the original hold, its id derived from the key');
SELECT is((SELECT count(*) FROM keen.credit_holds), 1::bigint, 'a retried hold key reserves nothing more');
SELECT throws_ok($$SELECT keen.hold_credits(p_amount => 5, p_idempotency_key => 'h-1')$$, 'KE005', NULL,
  'a hold key reused with another amount raises KE005');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 5)$$, 'KE001', NULL,
  'a deduction beyond the available balance (balance minus holds) raises KE001');
SELECT throws_ok($$SELECT keen.hold_credits(p_amount => 5)$$, 'KE001', NULL,
  'a hold beyond the available balance raises KE001');
SELECT throws_ok($$SELECT keen.hold_credits(p_amount => 1, p_expires_in => interval '0')$$, 'KE013', NULL,
  'a hold expiry that is not positive raises KE013');
SELECT throws_ok($$SELECT keen.capture_hold(p_hold_id => (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-1'), p_amount => 7)$$,
  'KE004', NULL, 'capturing more than the hold raises KE004');
SELECT results_eq(
  $$SELECT amount, balance_before, balance_after, hold_id FROM keen.capture_hold(
      p_hold_id => (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-1'), p_amount => 2.5)$$,
  $$SELECT -2.5000::numeric, 10.0000::numeric, 7.5000::numeric, id FROM keen.credit_holds WHERE idempotency_key = 'h-1'$$,
  'capture_hold charges the actual cost as a usage entry pointing at the hold');
SELECT results_eq($$SELECT current_balance, held_amount, available_balance FROM keen.credit_balance()$$,
                  $$VALUES (7.5000::numeric, 0::numeric, 7.5000::numeric)$$,
  'a partial capture frees the rest of the hold');
SELECT results_eq($$SELECT status, captured_amount FROM keen.credit_holds WHERE idempotency_key = 'h-1'$$,
                  $$VALUES ('captured', 2.5000::numeric)$$, 'the hold records its captured amount');
SELECT is((SELECT id FROM keen.capture_hold(p_hold_id => (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-1'), p_amount => 2.50)),
          (SELECT capture_transaction_id FROM keen.credit_holds WHERE idempotency_key = 'h-1'),
  'a retried capture with the same arguments returns the original entry (2.50 is 2.5) ...');
SELECT results_eq($$SELECT count(*), min(a.current_balance) FROM keen.credit_transactions AS t, keen.credit_accounts AS a
                    WHERE t.hold_id IS NOT NULL$$,
                  $$VALUES (1::bigint, 7.5000::numeric)$$, '... and charges nothing more');
SELECT throws_ok($$SELECT keen.capture_hold(p_hold_id => (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-1'))$$,
  'KE005', NULL, 'a hold is never captured twice: a retry with other arguments (the whole hold) raises KE005');
SELECT throws_ok($$SELECT keen.capture_hold(p_hold_id => (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-1'), p_amount => 2.5, p_description => 'other')$$,
  'KE005', NULL, 'a retried capture with another description raises KE005');
SELECT throws_ok($$SELECT keen.release_hold((SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-1'))$$,
  'KE007', NULL, 'a captured hold cannot be released: KE007');
SELECT is((SELECT status FROM keen.release_hold((SELECT id FROM keen.hold_credits(p_amount => 3, p_idempotency_key => 'h-2')))),
  'released', 'release_hold frees a hold');
SELECT is((SELECT available_balance FROM keen.credit_balance()), 7.5000::numeric, 'a released hold frees all its credits');
SELECT is((SELECT status FROM keen.release_hold((SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-2'))),
  'released', 'releasing a released hold again is a no-op');
SELECT throws_ok($$SELECT keen.capture_hold(p_hold_id => (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-2'))$$,
  'KE007', NULL, 'a released hold cannot be captured: KE007');
SELECT is((SELECT amount FROM keen.capture_hold(p_hold_id => (SELECT id FROM keen.hold_credits(p_amount => 1.25, p_idempotency_key => 'h-3')))),
  -1.2500::numeric, 'capture_hold without an amount captures the whole hold');
SELECT lives_ok($$SELECT keen.hold_credits(p_amount => 2, p_idempotency_key => 'h-4')$$, 'dave holds 2 more');
SELECT throws_ok($$UPDATE keen.credit_holds SET status = 'captured', captured_amount = 0 WHERE idempotency_key = 'h-4'$$,
  '42501', NULL, 'the service cannot mark a hold captured without its ledger entry');
SELECT throws_ok($$UPDATE keen.credit_holds SET amount = 0.01 WHERE idempotency_key = 'h-4'$$,
  '42501', NULL, 'the service cannot change a hold''s amount');
SELECT throws_ok($$UPDATE keen.credit_holds SET status = 'active' WHERE idempotency_key = 'h-2'$$,
  '42501', NULL, 'the service cannot make a released hold active again');
SELECT throws_ok($$SELECT keen.extend_hold('00000000-0000-4000-8000-0000000c0d01', (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-4'), 1)$$,
  '42501', NULL, 'the service cannot call extend_hold itself');
-- extend_hold, as a definer function calls it (here: the owner)
RESET ROLE;
SELECT results_eq($$SELECT amount, status FROM keen.extend_hold('00000000-0000-4000-8000-0000000c0d01',
                      (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-4'), 1.5)$$,
                  $$VALUES (3.5000::numeric, 'active')$$, 'extend_hold adds to an active hold ...');
SELECT results_eq($$SELECT current_balance, held_amount FROM keen.credit_accounts WHERE user_id = '00000000-0000-4000-8000-0000000c0d01'$$,
                  $$VALUES (6.2500::numeric, 3.5000::numeric)$$, '... and to the account''s held amount');
SELECT throws_ok($$SELECT keen.extend_hold('00000000-0000-4000-8000-0000000c0d01', (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-4'), 2.7501)$$,
  'KE001', NULL, 'extend_hold beyond the available balance raises KE001 ...');
SELECT results_eq($$SELECT h.amount, a.held_amount FROM keen.credit_holds h JOIN keen.credit_accounts a ON a.user_id = h.user_id
                    WHERE h.idempotency_key = 'h-4'$$,
                  $$VALUES (3.5000::numeric, 3.5000::numeric)$$, '... and writes nothing');
SELECT throws_ok($$SELECT keen.extend_hold('00000000-0000-4000-8000-0000000c0d01', (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-2'), 1)$$,
  'KE007', NULL, 'a released hold cannot be extended: KE007');
SELECT throws_ok($$SELECT keen.extend_hold('00000000-0000-4000-8000-0000000c0b01', (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-4'), 1)$$,
  'KE006', NULL, 'extend_hold finds a hold only under its own user: KE006');
SELECT throws_ok($$SELECT keen.extend_hold('00000000-0000-4000-8000-0000000c0d01', (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-4'), 0)$$,
  'KE004', NULL, 'extend_hold validates the amount: KE004');
SELECT results_eq($$SELECT amount FROM keen.extend_hold('00000000-0000-4000-8000-0000000c0d01',
                      (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-4'), 2.75)$$,
                  $$VALUES (6.2500::numeric)$$, 'extend_hold up to the whole available balance succeeds');
SET LOCAL ROLE keen_app;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0d01';
SELECT is((SELECT amount FROM keen.capture_hold(p_hold_id => (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'h-4'), p_amount => 6.25)),
  -6.2500::numeric, 'an extended hold is captured up to its new amount, with nothing else available');
SELECT results_eq($$SELECT current_balance, held_amount FROM keen.credit_accounts$$,
                  $$VALUES (0.0000::numeric, 0.0000::numeric)$$, 'the capture freed the hold and charged the balance');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 5, p_idempotency_key => 'd-topup'); SELECT keen.hold_credits(p_amount => 2, p_idempotency_key => 'h-4b')$$,
  'dave buys 5 more and holds 2 again');
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0b01';
SELECT throws_ok($$SELECT keen.capture_hold(p_hold_id => md5((SELECT id FROM keen.credit_accounts WHERE user_id = '00000000-0000-4000-8000-0000000c0d01')::text || ':hold:h-4b')::uuid)$$,
  'KE006', NULL, 'another tenant cannot capture dave''s hold: KE006');
SELECT throws_ok($$SELECT keen.release_hold(md5(gen_random_uuid()::text)::uuid)$$, 'KE006', NULL,
  'releasing an unknown hold raises KE006');

-- expiry and the sweeper (as an operator)
RESET ROLE;
SET LOCAL session_replication_role = replica;
UPDATE keen.credit_holds SET expires_at = now() - interval '1 second', created_at = now() - interval '2 hours'
 WHERE idempotency_key = 'h-4b';
SET LOCAL session_replication_role = origin;
SELECT is(keen.sweep_expired_holds(), 1, 'sweep_expired_holds expires the lapsed hold');
SELECT results_eq($$SELECT h.status, a.held_amount FROM keen.credit_holds h JOIN keen.credit_accounts a ON a.id = h.account_id
                    WHERE h.idempotency_key = 'h-4b'$$,
                  $$VALUES ('expired', 0.0000::numeric)$$, 'an expired hold frees its credits');
SELECT is(keen.sweep_expired_holds(), 0, 'sweeping again finds nothing');
-- A lapsed hold stops reserving credits at once, before any sweep. (Time is moved here: the
-- hold's expiry and the account's next_hold_expiry, as the passing hour would.)
SET LOCAL ROLE keen_app;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0d01';
SELECT lives_ok($$SELECT keen.hold_credits(p_amount => 1, p_idempotency_key => 'h-5')$$, 'dave holds 1 ...');
RESET ROLE;
SET LOCAL session_replication_role = replica;
UPDATE keen.credit_holds SET expires_at = now() - interval '1 second', created_at = now() - interval '2 hours'
 WHERE idempotency_key = 'h-5';
UPDATE keen.credit_accounts SET next_hold_expiry = now() - interval '1 second'
 WHERE user_id = '00000000-0000-4000-8000-0000000c0d01';
SET LOCAL session_replication_role = origin;
SET LOCAL ROLE keen_app;
SELECT is((SELECT available_balance FROM keen.check_credits(1)), 5.0000::numeric,
  '... and once it lapses check_credits no longer counts it');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 0.25)$$, 'the next credit call of the account ...');
SELECT results_eq($$SELECT status FROM keen.credit_holds WHERE idempotency_key = 'h-5'$$, $$VALUES ('expired')$$,
  '... expires the lapsed hold under the account lock');
SELECT results_eq($$SELECT held_amount, next_hold_expiry FROM keen.credit_accounts$$, $$VALUES (0.0000::numeric, NULL::timestamptz)$$,
  '... freeing its credits; no active hold is left to wait for');
RESET ROLE;

-- ===== limits (carol, UTC+14) ================================================
SET LOCAL ROLE keen_app;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0c01';
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 1000)$$, 'carol buys 1000');
SELECT is(keen.credit_local_date('00000000-0000-4000-8000-0000000c0c01', '2026-01-01 11:00+00'), '2026-01-02'::date,
  'the local day is the user''s own (UTC+14: 11:00 UTC is already tomorrow)');
SELECT throws_ok($$SELECT keen.set_spending_limits(p_daily_limit => 100, p_monthly_limit => 50)$$, 'KE013', NULL,
  'a daily limit above the monthly one raises KE013');
SELECT throws_ok($$SELECT keen.set_spending_limits(p_daily_limit => -5)$$, 'KE004', NULL, 'a negative limit raises KE004');
SELECT results_eq($$SELECT daily_limit, monthly_limit FROM keen.set_spending_limits(p_daily_limit => 10, p_monthly_limit => 25)$$,
                  $$VALUES (10.0000::numeric, 25.0000::numeric)$$, 'set_spending_limits sets both limits');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 6)$$, 'spending within the daily limit succeeds');
SELECT is((SELECT spent_today_date FROM keen.credit_accounts), (now() AT TIME ZONE 'Pacific/Kiritimati')::date,
  'spending is counted on the user''s local day');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 4.0001)$$, 'KE002', NULL,
  'spending beyond the daily limit raises KE002');
SELECT lives_ok($$SELECT keen.hold_credits(p_amount => 3, p_idempotency_key => 'c-h')$$, 'a hold within the daily limit succeeds');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1.5)$$, 'KE002', NULL,
  'active holds count against the daily limit: KE002');
SELECT throws_ok($$SELECT keen.hold_credits(p_amount => 1.5)$$, 'KE002', NULL, 'a hold beyond the daily limit raises KE002');
SELECT lives_ok($$SELECT keen.capture_hold(p_hold_id => (SELECT id FROM keen.credit_holds WHERE idempotency_key = 'c-h'))$$,
  'capturing a hold is not refused by the limit it was counted against');
-- Spending of a past day and month does not count now: move carol's entries and counters a month
-- and a day back (as an operator, triggers off).
RESET ROLE;
SET LOCAL session_replication_role = replica;
UPDATE keen.credit_transactions SET created_at = created_at - interval '1 month 1 day'
 WHERE user_id = '00000000-0000-4000-8000-0000000c0c01';
UPDATE keen.credit_accounts
   SET spent_today_date = ((now() - interval '1 month 1 day') AT TIME ZONE 'Pacific/Kiritimati')::date,
       spent_month_start = date_trunc('month', (now() - interval '1 month 1 day') AT TIME ZONE 'Pacific/Kiritimati')::date
 WHERE user_id = '00000000-0000-4000-8000-0000000c0c01';
SET LOCAL session_replication_role = origin;
SET LOCAL ROLE keen_app;
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 9)$$, 'a new local day starts a new daily count');
SELECT results_eq($$SELECT spent_today, spent_this_month FROM keen.credit_balance()$$, $$VALUES (9.0000::numeric, 9.0000::numeric)$$,
  'the counters restart on a new local day and month');
SELECT lives_ok($$SELECT keen.set_spending_limits(p_monthly_limit => 15)$$, 'carol sets only a monthly limit of 15');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 6.0001)$$, 'KE003', NULL,
  'spending beyond the monthly limit raises KE003');

-- ===== auto-recharge (erin) and the billing service ==========================
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0e01';
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 30)$$, 'erin buys 30');
SELECT results_eq($$SELECT auto_recharge_enabled, auto_recharge_threshold, auto_recharge_amount
                      FROM keen.configure_auto_recharge(p_enabled => true, p_threshold => 20, p_amount => 50)$$,
                  $$VALUES (true, 20.0000::numeric, 50.0000::numeric)$$, 'configure_auto_recharge turns it on');
SELECT throws_ok($$SELECT keen.configure_auto_recharge(p_enabled => true, p_amount => 0)$$, 'KE004', NULL,
  'a zero recharge amount raises KE004');
SELECT throws_ok($$UPDATE keen.credit_accounts SET auto_recharge_threshold = 'NaN'$$, '42501', NULL,
  'the service cannot set a recharge threshold by a direct UPDATE at all (no UPDATE privilege)');
SET LOCAL ROLE keen_owner;
SELECT throws_ok($$UPDATE keen.credit_accounts SET auto_recharge_threshold = 'NaN'$$, '23514', NULL,
  'no one sets a NaN recharge threshold (it would break every deduction)');
SELECT throws_ok($$UPDATE keen.credit_accounts SET auto_recharge_amount = 'NaN'$$, '23514', NULL,
  'nor a NaN recharge amount');
SET LOCAL ROLE keen_app;
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 5)$$, 'a deduction that stays above the threshold ...');
SELECT is((SELECT count(*) FROM keen.recharge_requests), 0::bigint, '... records no recharge request');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 10)$$, 'a deduction that takes the balance under the threshold ...');
SELECT results_eq($$SELECT status, amount, balance_at_request FROM keen.recharge_requests$$,
                  $$VALUES ('pending', 50.0000::numeric, 15.0000::numeric)$$, '... records one pending recharge request');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'a further deduction under the threshold ...');
SELECT is((SELECT count(*) FROM keen.recharge_requests), 1::bigint, '... records no second request while one is open');
RESET ROLE;
SELECT is((SELECT status FROM keen.claim_recharge_requests(p_limit => 100) WHERE user_id = '00000000-0000-4000-8000-0000000c0e01'),
  'processing', 'the billing service claims the pending request');
SELECT is((SELECT count(*) FROM keen.claim_recharge_requests(p_limit => 100) WHERE user_id = '00000000-0000-4000-8000-0000000c0e01'),
  0::bigint, 'a request being processed is not claimed twice ...');
UPDATE keen.recharge_requests SET claimed_at = now() - interval '1 hour'
 WHERE user_id = '00000000-0000-4000-8000-0000000c0e01';
SELECT results_eq($$SELECT status, attempts FROM keen.claim_recharge_requests(p_limit => 100, p_reclaim_after => '30 minutes')
                     WHERE user_id = '00000000-0000-4000-8000-0000000c0e01'$$,
  $$VALUES ('processing', 2)$$, '... until its worker has been silent longer than p_reclaim_after: then it is claimed again');
SELECT is((SELECT amount FROM keen.complete_recharge_request(
             (SELECT id FROM keen.recharge_requests WHERE user_id = '00000000-0000-4000-8000-0000000c0e01'), 'pi_recharge_1')),
  50.0000::numeric, 'completing a request credits its amount as a purchase');
SELECT results_eq($$SELECT r.status, a.current_balance FROM keen.recharge_requests r JOIN keen.credit_accounts a ON a.id = r.account_id
                    WHERE r.user_id = '00000000-0000-4000-8000-0000000c0e01'$$,
                  $$VALUES ('completed', 64.0000::numeric)$$, 'the request is completed and the balance recharged');
SELECT is((SELECT count(*) FROM (SELECT keen.complete_recharge_request(id) FROM keen.recharge_requests
                                   WHERE user_id = '00000000-0000-4000-8000-0000000c0e01') AS x), 1::bigint,
  'completing it again returns the same purchase ...');
SELECT is((SELECT count(*) FROM keen.credit_transactions WHERE user_id = '00000000-0000-4000-8000-0000000c0e01' AND transaction_type = 'purchase'),
  2::bigint, '... and credits nothing more');
SELECT throws_ok($$SELECT keen.fail_recharge_request((SELECT id FROM keen.recharge_requests WHERE user_id = '00000000-0000-4000-8000-0000000c0e01'), 'x')$$,
  'KE007', NULL, 'a completed request cannot fail: KE007');
SET LOCAL ROLE keen_app;
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 50)$$, 'a later deduction under the threshold ...');
RESET ROLE;
SELECT is((SELECT status FROM keen.fail_recharge_request((SELECT id FROM keen.recharge_requests WHERE status = 'pending' AND user_id = '00000000-0000-4000-8000-0000000c0e01'), 'card declined')),
  'failed', '... opens a new request, which the billing service can fail');

-- ===== account state (an operator suspends or closes erin's account) =========
UPDATE keen.credit_accounts SET account_status = 'suspended', suspended_reason = 'chargeback'
 WHERE user_id = '00000000-0000-4000-8000-0000000c0e01';
SET LOCAL ROLE keen_app;
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'KE012', NULL, 'a suspended account cannot be charged: KE012');
SELECT throws_ok($$SELECT keen.hold_credits(p_amount => 1)$$, 'KE012', NULL, 'a suspended account cannot place holds: KE012');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 1, p_transaction_type => 'refund')$$, 'a suspended account may still receive credits');
RESET ROLE;
UPDATE keen.credit_accounts SET account_status = 'closed' WHERE user_id = '00000000-0000-4000-8000-0000000c0e01';
SET LOCAL ROLE keen_app;
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 1)$$, 'KE012', NULL, 'a closed account receives nothing: KE012');
RESET ROLE;

-- ===== append-only for every role but a migration ============================
SELECT throws_ok($$UPDATE keen.credit_transactions SET description = 'x'$$, '42501', NULL,
  'even a superuser acting as itself cannot UPDATE the ledger');
SELECT throws_ok($$TRUNCATE keen.credit_accounts CASCADE$$, '42501', NULL,
  'a cascaded TRUNCATE cannot empty the ledger either');
SET LOCAL ROLE keen_owner;
SELECT is(keen.in_migration(), true, 'a migration (an operator login acting as keen_owner) counts as one');
SELECT lives_ok($$UPDATE keen.credit_transactions SET description = description || ' (migrated)' WHERE transaction_type = 'refund'$$,
  'a migration may rewrite ledger rows');
RESET ROLE;

-- ===== without tenant context ================================================
SET LOCAL ROLE keen_app;
SET LOCAL app.current_user_id = '';
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'KE010', NULL, 'deduct_credits without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => -1)$$, 'KE010', NULL, 'the missing tenant is reported before the amount');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 1)$$, 'KE010', NULL, 'add_credits without tenant context raises KE010');
SELECT throws_ok($$SELECT * FROM keen.credit_balance()$$, 'KE010', NULL, 'credit_balance without tenant context raises KE010');
SELECT throws_ok($$SELECT keen.hold_credits(p_amount => 1)$$, 'KE010', NULL, 'hold_credits without tenant context raises KE010');
SELECT is_empty($$SELECT id FROM keen.credit_transactions$$, 'without tenant context the ledger shows no row');
RESET ROLE;

-- ===== verify_ledger (operators) =============================================
SELECT is_empty($$SELECT * FROM keen.verify_ledger()$$, 'verify_ledger is empty on a healthy ledger');
SET LOCAL ROLE keen_app;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000c0f01';
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 10); SELECT keen.deduct_credits(p_amount => 4); SELECT keen.hold_credits(p_amount => 1)$$,
  'frank buys, spends and holds');
RESET ROLE;
-- Corrupt frank's rows behind every guard (only a superuser can switch triggers off).
SET LOCAL session_replication_role = replica;
UPDATE keen.credit_accounts SET current_balance = 7, lifetime_purchased = 11, lifetime_spent = 3, held_amount = 0,
       spent_today = 1
 WHERE user_id = '00000000-0000-4000-8000-0000000c0f01';
UPDATE keen.credit_transactions SET balance_before = 9, balance_after = 5 WHERE user_id = '00000000-0000-4000-8000-0000000c0f01' AND entry_no = 2;
SET LOCAL session_replication_role = origin;
SELECT set_eq($$SELECT invariant FROM keen.verify_ledger()$$,
              ARRAY['balance_equals_ledger_sum', 'lifetime_purchased', 'lifetime_spent', 'balance_chain',
                    'held_amount_equals_active_holds', 'spending_counters'],
  'verify_ledger reports each violated invariant: balance vs sum, lifetime totals, the balance chain, holds, counters');
SELECT ok((SELECT bool_and(user_id = '00000000-0000-4000-8000-0000000c0f01') FROM keen.verify_ledger()),
  'verify_ledger names the corrupted account only');

SELECT * FROM finish();
ROLLBACK;
