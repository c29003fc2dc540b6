-- Credits, billing and analytics on a distributed (Citus) database: every public function
-- of the area in tenant context (the service) or as an operator, and at the end balances
-- equal to ledger sums (verify_ledger() empty) and daily figures equal to their
-- recomputation (verify_usage_stats() empty). Runs as a superuser login on the coordinator,
-- in one transaction that is rolled back. The tenant context is what keen_sql sends on
-- Citus: the role by set_config (a SET LOCAL ROLE would reach the workers and be refused
-- there), the tenant by SET LOCAL (propagated to the workers).
-- Citus keeps one connection per user to each shard in a transaction and refuses to read,
-- as one user, a shard another user modified in the same transaction (citusdata/citus#3867).
-- Since 0019 the readers are SECURITY DEFINER like the movements, so the service reads what a
-- movement wrote before it in one transaction (checked below, as keen_app); direct table
-- reads as keen_app after a write would still be refused, so the checks here read as keen_owner.
BEGIN;
SELECT plan(93);
SET LOCAL client_min_messages = warning;
-- The number of shard tasks of a query (EXPLAIN's "Task Count"); created first, before the
-- transaction touches a distributed table (Citus runs a function command on one connection).
CREATE FUNCTION pg_temp.task_count(p_query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v_line text;
BEGIN
  FOR v_line IN EXECUTE 'EXPLAIN ' || p_query LOOP
    IF v_line ~ 'Task Count:' THEN
      RETURN (pg_catalog.regexp_match(v_line, 'Task Count: (\d+)'))[1];
    END IF;
  END LOOP;
  RETURN NULL;
END
$$;
GRANT USAGE ON SCHEMA tap TO keen_app, keen_owner, keen_analytics;

-- ===== the service's reads, as keen_app, before anything is written ==============
DO $$ BEGIN PERFORM set_config('role', 'keen_app', true); END $$;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-00000030a001';
SELECT throws_ok($$SELECT * FROM keen.credit_balance()$$, 'KE006', NULL,
  'credit_balance as keen_app: no account yet (KE006)');
SELECT throws_ok($$SELECT * FROM keen.check_credits(1)$$, 'KE006', NULL,
  'check_credits as keen_app: no account yet (KE006)');
SELECT is((SELECT sum(credits_spent) FROM keen.usage_report(current_date - 1, current_date)), 0::numeric,
  'usage_report as keen_app: zeros for days without figures');
SELECT throws_ok($$SELECT * FROM keen.session_cost_breakdown('d-a-root')$$, 'KE006', NULL,
  'session_cost_breakdown as keen_app: no such session (KE006)');
DO $$ BEGIN PERFORM set_config('role', 'postgres', true); END $$;

-- ===== fixtures (as the owner) ===============================================
-- alice (UTC) and bob (UTC+14) are ordinary tenants; carol has limits; dave auto-recharges.
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;
INSERT INTO keen.users (id, email, username, password_hash, timezone) VALUES
  ('00000000-0000-4000-8000-00000030a001', 'd-alice@example.com', 'd-alice', repeat('a', 32), 'UTC'),
  ('00000000-0000-4000-8000-00000030b001', 'd-bob@example.com', 'd-bob', repeat('b', 32), 'Pacific/Kiritimati'),
  ('00000000-0000-4000-8000-00000030c001', 'd-carol@example.com', 'd-carol', repeat('c', 32), 'UTC'),
  ('00000000-0000-4000-8000-00000030d001', 'd-dave@example.com', 'd-dave', repeat('d', 32), 'UTC');
INSERT INTO keen.credit_accounts (id, user_id) VALUES
  ('00000000-0000-4000-8000-00000030a0ac', '00000000-0000-4000-8000-00000030a001'),
  ('00000000-0000-4000-8000-00000030b0ac', '00000000-0000-4000-8000-00000030b001'),
  ('00000000-0000-4000-8000-00000030c0ac', '00000000-0000-4000-8000-00000030c001'),
  ('00000000-0000-4000-8000-00000030d0ac', '00000000-0000-4000-8000-00000030d001');
-- alice's root session (running) and its child (completed).
INSERT INTO keen.agent_sessions (id, user_id, session_id, git_branch, vision, working_directory) VALUES
  ('00000000-0000-4000-8000-00000030a501', '00000000-0000-4000-8000-00000030a001', 'd-a-root', 'main', 'v', '/w');
INSERT INTO keen.agent_sessions (id, user_id, session_id, parent_session_id, session_depth, git_branch, vision,
                                 working_directory, execution_status, end_time, total_cost, tokens_used) VALUES
  ('00000000-0000-4000-8000-00000030a502', '00000000-0000-4000-8000-00000030a001', 'd-a-child',
   '00000000-0000-4000-8000-00000030a501', 1, 'main', 'v', '/w', 'completed', now(), 0.25, 100);
-- Figures of sessions written directly are not tracked: rebuilt (and so tested) here.
SELECT ok(keen.rebuild_usage_stats('00000000-0000-4000-8000-00000030a001') >= 0,
  'rebuild_usage_stats(user) rebuilds one tenant''s figures');
SELECT is_empty($$SELECT * FROM keen.verify_usage_stats()
                  WHERE user_id::text LIKE '00000000-0000-4000-8000-00000030%'$$,
  'verify_usage_stats: the fixtures'' figures are right after the rebuild');

-- ===== the routing: a tenant's statements reach one shard =======================
SELECT is(pg_temp.task_count($$SELECT a.* FROM keen.credit_accounts AS a
                                 WHERE a.user_id = '00000000-0000-4000-8000-00000030a001' FOR UPDATE$$), '1',
  'the account lock of a movement (by user_id) is one task on one shard');
SELECT is(pg_temp.task_count($$SELECT a.*, u.timezone FROM keen.credit_accounts AS a
                                 LEFT JOIN keen.users AS u ON u.id = '00000000-0000-4000-8000-00000030a001'
                                 WHERE a.user_id = '00000000-0000-4000-8000-00000030a001'$$), '1',
  'the account read with the user''s time zone is one task');
SELECT is(pg_temp.task_count($$SELECT r.* FROM keen.recharge_requests AS r
                                 WHERE r.user_id = '00000000-0000-4000-8000-00000030a001'
                                   AND r.id = '00000000-0000-4000-8000-000000000001' FOR UPDATE SKIP LOCKED$$), '1',
  'a recharge request is claimed on its tenant''s shard alone (FOR UPDATE SKIP LOCKED by user_id)');

-- ===== the service, as alice ===================================================
DO $$ BEGIN PERFORM set_config('role', 'keen_app', true); END $$;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-00000030a001';
SELECT results_eq(
  $$SELECT entry_no, transaction_type, amount, balance_before, balance_after FROM keen.add_credits(p_amount => 100)$$,
  $$VALUES (1::bigint, 'purchase', 100.0000::numeric, 0.0000::numeric, 100.0000::numeric)$$,
  'add_credits appends entry 1, a purchase, with the balance before and after');
SELECT results_eq(
  $$SELECT entry_no, transaction_type, amount, balance_after, session_id, idempotency_key
      FROM keen.deduct_credits(p_amount => 2.5, p_session_id => '00000000-0000-4000-8000-00000030a501',
                               p_idempotency_key => 'd-a-1')$$,
  $$VALUES (2::bigint, 'usage', -2.5000::numeric, 97.5000::numeric, '00000000-0000-4000-8000-00000030a501'::uuid, 'd-a-1')$$,
  'deduct_credits appends a usage entry with the session and the key');
SELECT is((SELECT entry_no FROM keen.deduct_credits(p_amount => 2.5, p_session_id => '00000000-0000-4000-8000-00000030a501',
                                                    p_idempotency_key => 'd-a-1')),
          2::bigint, 'a retried key returns the original entry');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 3, p_idempotency_key => 'd-a-1')$$, 'KE005', NULL,
  'a key reused with other arguments raises KE005');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1000)$$, 'KE001', NULL,
  'a deduction beyond the balance raises KE001');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 0)$$, 'KE004', NULL, 'a zero amount raises KE004');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1, p_session_id => gen_random_uuid())$$, 'KE006', NULL,
  'charging an unknown session raises KE006');
SELECT is((SELECT amount FROM keen.deduct_credits(p_amount => 1.5, p_session_id => '00000000-0000-4000-8000-00000030a502')),
  -1.5000::numeric, 'a deduction for the child session');
SELECT results_eq(
  $$SELECT transaction_type, amount, balance_after FROM keen.add_credits(p_amount => 1, p_transaction_type => 'refund',
                                                                        p_description => 'failed run')$$,
  $$VALUES ('refund', 1.0000::numeric, 97.0000::numeric)$$, 'a refund adds credits');
SELECT is((SELECT amount FROM keen.add_credits(p_amount => 0.5, p_transaction_type => 'adjustment')),
  0.5000::numeric, 'an adjustment adds credits');
SELECT is((SELECT id FROM keen.add_credits(p_amount => 5, p_stripe_payment_intent_id => 'pi_d_alice_1')),
          (SELECT id FROM keen.add_credits(p_amount => 5, p_stripe_payment_intent_id => 'pi_d_alice_1')),
  'a payment intent is credited once');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 6, p_stripe_payment_intent_id => 'pi_d_alice_1')$$, 'KE005', NULL,
  'the same payment intent with another amount raises KE005');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 1, p_transaction_type => 'usage')$$, 'KE013', NULL,
  'add_credits refuses the usage type with KE013');
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;  -- reads as the definer (see the top)
SELECT results_eq($$SELECT sufficient, current_balance, available_balance, shortfall FROM keen.check_credits(200)$$,
                  $$VALUES (false, 102.5000::numeric, 102.5000::numeric, 97.5000::numeric)$$,
  'check_credits reports the shortfall');
SELECT results_eq($$SELECT current_balance, held_amount, lifetime_purchased, lifetime_spent, spent_today FROM keen.credit_balance()$$,
                  $$VALUES (102.5000::numeric, 0::numeric, 105.0000::numeric, 4.0000::numeric, 4.0000::numeric)$$,
  'credit_balance: balance, holds, lifetime totals and spending today');
SELECT is(keen.round_cost(0.000101), 0.0002::numeric, 'round_cost rounds a 6-place cost up to 4 places');
SELECT is(keen.validate_credit_amount(1.5), 1.5000::numeric, 'validate_credit_amount returns a valid amount');
SELECT is(keen.credit_local_date('00000000-0000-4000-8000-00000030a001', '2026-01-01 23:30+00'),
  '2026-01-01'::date, 'credit_local_date: alice''s day (UTC)');
DO $$ BEGIN PERFORM set_config('role', 'keen_app', true); END $$;
SELECT results_eq($$SELECT current_balance FROM keen.credit_balance()$$, $$VALUES (102.5000::numeric)$$,
  'Citus: the service reads, in this transaction, the shard a movement wrote in it (citus#3867: the readers run as keen_owner too since 0019)');

-- holds
SELECT results_eq(
  $$SELECT amount, status, session_id FROM keen.hold_credits(p_session_id => '00000000-0000-4000-8000-00000030a501',
                                                                p_amount => 10, p_idempotency_key => 'd-h-1')$$,
  $$VALUES (10.0000::numeric, 'active', '00000000-0000-4000-8000-00000030a501'::uuid)$$,
  'hold_credits reserves credits for a session');
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;  -- reads as the definer (see the top)
SELECT is((SELECT available_balance FROM keen.check_credits(1)), 92.5000::numeric, 'a hold lowers the available balance');
DO $$ BEGIN PERFORM set_config('role', 'keen_app', true); END $$;
SELECT throws_ok($$SELECT keen.hold_credits(p_amount => 1000)$$, 'KE001', NULL, 'a hold beyond the available balance raises KE001');
SELECT throws_ok($$SELECT keen.capture_hold(md5(keen.current_user_id()::text || '0')::uuid)$$, 'KE006', NULL,
  'capturing an unknown hold raises KE006');
SELECT throws_ok(
  $$SELECT keen.capture_hold(md5('00000000-0000-4000-8000-00000030a0ac:hold:d-h-1')::uuid)$$,
  'KE007', NULL, 'the hold of a running session is not captured by hand (KE007)');
SELECT throws_ok(
  $$SELECT keen.release_hold(md5('00000000-0000-4000-8000-00000030a0ac:hold:d-h-1')::uuid)$$,
  'KE007', NULL, 'nor released (KE007)');
SELECT is((SELECT status FROM keen.hold_credits(p_amount => 3, p_idempotency_key => 'd-h-2')), 'active',
  'a hold without a session');
SELECT results_eq(
  $$SELECT entry_no, amount, hold_id IS NOT NULL FROM keen.capture_hold(
      md5('00000000-0000-4000-8000-00000030a0ac:hold:d-h-2')::uuid, 2, 'capture')$$,
  $$VALUES (7::bigint, -2.0000::numeric, true)$$, 'capture_hold charges part of a hold and frees the rest');
SELECT is((SELECT entry_no FROM keen.capture_hold(
             md5('00000000-0000-4000-8000-00000030a0ac:hold:d-h-2')::uuid, 2, 'capture')),
  7::bigint, 'a retried capture returns the original entry');
SELECT throws_ok(
  $$SELECT keen.release_hold(md5('00000000-0000-4000-8000-00000030a0ac:hold:d-h-2')::uuid)$$,
  'KE007', NULL, 'a captured hold is not released (KE007)');
SELECT is((SELECT status FROM keen.hold_credits(p_amount => 4, p_idempotency_key => 'd-h-3')), 'active', 'a third hold');
SELECT is((SELECT status FROM keen.release_hold(md5('00000000-0000-4000-8000-00000030a0ac:hold:d-h-3')::uuid)),
  'released', 'release_hold frees a hold');
SELECT is((SELECT status FROM keen.release_hold(md5('00000000-0000-4000-8000-00000030a0ac:hold:d-h-3')::uuid)),
  'released', 'releasing a released hold is a no-op');
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;  -- reads as the definer (see the top)
SELECT is((SELECT held_amount FROM keen.credit_balance()), 10.0000::numeric, 'only the session''s hold is held');
DO $$ BEGIN PERFORM set_config('role', 'keen_app', true); END $$;

-- limits and auto-recharge settings
SELECT results_eq($$SELECT daily_limit, monthly_limit FROM keen.set_spending_limits(50, 500)$$,
                  $$VALUES (50.0000::numeric, 500.0000::numeric)$$, 'set_spending_limits sets both limits');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 40)$$, 'KE002', NULL,
  'spent today + held + amount over the daily limit raises KE002');
SELECT lives_ok($$SELECT keen.set_spending_limits(NULL, 20)$$, 'a monthly limit alone');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 7)$$, 'KE003', NULL,
  'spent this month + held + amount over the monthly limit raises KE003');
SELECT throws_ok($$SELECT keen.set_spending_limits(600, 500)$$, 'KE013', NULL, 'a daily limit above the monthly one raises KE013');
SELECT lives_ok($$SELECT keen.set_spending_limits(NULL, NULL)$$, 'limits removed');
SELECT results_eq($$SELECT auto_recharge_enabled, auto_recharge_threshold, auto_recharge_amount
                      FROM keen.configure_auto_recharge(false, 5, 25)$$,
                  $$VALUES (false, 5.0000::numeric, 25.0000::numeric)$$, 'configure_auto_recharge keeps its settings');

DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;  -- reads as the definer (see the top)
-- analytics of the tenant
SELECT results_eq($$SELECT credits_purchased, credits_spent, credits_refunded, credits_adjusted
                      FROM keen.usage_report(current_date, current_date)$$,
                  $$VALUES (105.0000::numeric, 6.0000::numeric, 1.0000::numeric, 0.5000::numeric)$$,
  'usage_report: today''s credit figures of the caller');
SELECT is((SELECT count(*) FROM keen.usage_report(current_date - 6, current_date)), 7::bigint,
  'usage_report: one row per day of the range');
SELECT throws_ok($$SELECT * FROM keen.usage_report(current_date, current_date - 1)$$, 'KE013', NULL,
  'usage_report refuses a reversed range (KE013)');
SELECT results_eq($$SELECT session_id, depth, own_cost, tree_cost, own_charged, tree_charged, descendants
                      FROM keen.session_cost_breakdown('d-a-root')$$,
                  $$VALUES ('d-a-root', 0, 0::numeric, 0.25::numeric, 2.5000::numeric, 4.0000::numeric, 1),
                           ('d-a-child', 1, 0.25::numeric, 0.25::numeric, 1.5000::numeric, 1.5000::numeric, 0)$$,
  'session_cost_breakdown: each session''s own and subtree cost and charges');

-- ===== another tenant, bob (UTC+14) ==============================================
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-00000030b001';
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'KE001', NULL,
  'bob''s empty account cannot pay: alice''s balance is not his');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1, p_session_id => '00000000-0000-4000-8000-00000030a501')$$,
  'KE006', NULL, 'charging another tenant''s session raises KE006');
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;  -- reads as the definer (see the top)
SELECT throws_ok($$SELECT * FROM keen.session_cost_breakdown('d-a-root')$$, 'KE006', NULL,
  'another tenant''s session tree is not found (KE006)');
DO $$ BEGIN PERFORM set_config('role', 'keen_app', true); END $$;
SELECT is((SELECT entry_no FROM keen.add_credits(p_amount => 3, p_idempotency_key => 'd-a-1')), 1::bigint,
  'idempotency keys are per tenant: bob may use alice''s key');
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;  -- reads as the definer (see the top)
SELECT is((SELECT credits_purchased FROM keen.usage_report(
             (now() AT TIME ZONE 'Pacific/Kiritimati')::date, (now() AT TIME ZONE 'Pacific/Kiritimati')::date)),
  3.0000::numeric, 'bob''s purchase counts on his own local day');

-- ===== dave: auto-recharge through the billing service ===========================
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-00000030d001';
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 20)$$, 'dave buys 20 credits');
SELECT lives_ok($$SELECT keen.configure_auto_recharge(true, 15, 50)$$, 'dave turns auto-recharge on below 15');
SELECT is((SELECT balance_after FROM keen.deduct_credits(p_amount => 6)), 14.0000::numeric,
  'a deduction takes dave below the threshold ...');
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;  -- reads as the definer (see the top)
SELECT results_eq($$SELECT count(*) FROM keen.recharge_requests AS r
                     WHERE r.user_id = '00000000-0000-4000-8000-00000030d001' AND r.status = 'pending'$$,
  $$VALUES (1::bigint)$$, '... and queues one pending recharge request');
DO $$ BEGIN PERFORM set_config('role', 'keen_app', true); END $$;
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'another deduction below the threshold ...');
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;  -- reads as the definer (see the top)
SELECT results_eq($$SELECT count(*) FROM keen.recharge_requests AS r WHERE r.user_id = '00000000-0000-4000-8000-00000030d001'$$,
  $$VALUES (1::bigint)$$, '... queues no second request');
DO $$ BEGIN PERFORM set_config('role', 'keen_app', true); END $$;
SELECT is((SELECT status FROM keen.hold_credits(p_amount => 2, p_idempotency_key => 'd-h-dave')), 'active',
  'dave holds 2 credits');
-- carol, too, needs a recharge (for the billing workers' queue).
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-00000030c001';
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 10)$$, 'carol buys 10 credits');
SELECT lives_ok($$SELECT keen.configure_auto_recharge(true, 50, 30)$$, 'carol auto-recharges below 50');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'carol''s deduction queues her request');

-- ===== the billing service and the operators (as the owner) ======================
DO $$ BEGIN PERFORM set_config('role', 'keen_owner', true); END $$;
SELECT results_eq(
  $$SELECT status, attempts FROM keen.claim_recharge_requests(1)
     WHERE user_id IN ('00000000-0000-4000-8000-00000030c001', '00000000-0000-4000-8000-00000030d001')$$,
  $$VALUES ('processing', 1)$$,
  'claim_recharge_requests claims up to its limit: one request');
SELECT is((SELECT count(*) FROM keen.claim_recharge_requests(10)
            WHERE user_id IN ('00000000-0000-4000-8000-00000030c001', '00000000-0000-4000-8000-00000030d001')),
  1::bigint, 'a second claim skips the request being processed and takes the other one');
SELECT results_eq($$SELECT count(*) FROM keen.recharge_requests AS r
                     WHERE r.user_id IN ('00000000-0000-4000-8000-00000030c001', '00000000-0000-4000-8000-00000030d001')
                       AND r.status = 'processing' AND r.attempts = 1$$,
  $$VALUES (2::bigint)$$, 'both requests are processing, each claimed once');
SELECT is((SELECT count(*) FROM keen.claim_recharge_requests(10)
            WHERE user_id IN ('00000000-0000-4000-8000-00000030c001', '00000000-0000-4000-8000-00000030d001')),
  0::bigint, 'nothing is left to claim');
SELECT is((SELECT count(*) FROM keen.claim_recharge_requests(10, '0 seconds')
            WHERE user_id IN ('00000000-0000-4000-8000-00000030c001', '00000000-0000-4000-8000-00000030d001')),
  0::bigint, 'a request claimed in this very moment is not reclaimed yet');
-- The billing service knows its requests by id (from its claim); here they are read first
-- (one statement each: a shard query inside a call of a coordinator function would nest).
SELECT r.id AS dave_request FROM keen.recharge_requests AS r
 WHERE r.user_id = '00000000-0000-4000-8000-00000030d001' \gset
SELECT r.id AS carol_request FROM keen.recharge_requests AS r
 WHERE r.user_id = '00000000-0000-4000-8000-00000030c001' \gset
SELECT results_eq(
  format($$SELECT transaction_type, amount, balance_after, description
             FROM keen.complete_recharge_request(%L, 'pi_d_dave')$$, :'dave_request'),
  $$VALUES ('purchase', 50.0000::numeric, 63.0000::numeric, 'auto-recharge')$$,
  'complete_recharge_request credits the recharge as a purchase');
SELECT results_eq(
  format($$SELECT amount FROM keen.complete_recharge_request(%L, 'pi_d_dave')$$, :'dave_request'),
  $$VALUES (50.0000::numeric)$$, 'a repeated webhook returns the same purchase');
SELECT results_eq(
  format($$SELECT status, failure_reason FROM keen.fail_recharge_request(%L, 'card declined')$$, :'carol_request'),
  $$VALUES ('failed', 'card declined')$$, 'fail_recharge_request closes a request as failed');
SELECT throws_ok(format($$SELECT keen.fail_recharge_request(%L)$$, :'carol_request'),
  'KE007', NULL, 'a failed request cannot fail again (KE007)');
SELECT throws_ok(format($$SELECT keen.complete_recharge_request(%L)$$, :'carol_request'),
  'KE007', NULL, 'a failed request cannot be completed (KE007)');
SELECT throws_ok($$SELECT keen.complete_recharge_request(gen_random_uuid())$$, 'KE006', NULL,
  'an unknown request is not found (KE006)');
-- A lapsed hold (its expiry moved into the past by hand) is expired by the sweeper.
UPDATE keen.credit_holds AS h SET expires_at = now() - interval '1 second'
 WHERE h.user_id = '00000000-0000-4000-8000-00000030a001' AND h.idempotency_key = 'd-h-1';
UPDATE keen.credit_accounts AS a SET next_hold_expiry = now() - interval '1 second'
 WHERE a.user_id = '00000000-0000-4000-8000-00000030a001';
SELECT is(keen.sweep_expired_holds(), 1, 'sweep_expired_holds expires the lapsed hold');
SELECT results_eq($$SELECT h.status FROM keen.credit_holds AS h
            WHERE h.user_id = '00000000-0000-4000-8000-00000030a001' AND h.idempotency_key = 'd-h-1'$$,
  $$VALUES ('expired')$$, 'the hold is expired');
SELECT is(keen.sweep_expired_holds(), 0, 'a second sweep finds nothing');
-- extend_hold (internal: the session functions call it as the owner) grows dave's hold.
SELECT h.id AS dave_hold FROM keen.credit_holds AS h
 WHERE h.user_id = '00000000-0000-4000-8000-00000030d001' AND h.idempotency_key = 'd-h-dave' \gset
SELECT results_eq(
  format($$SELECT h.amount, h.status FROM keen.extend_hold('00000000-0000-4000-8000-00000030d001', %L, 5) AS h$$,
         :'dave_hold'),
  $$VALUES (7.0000::numeric, 'active')$$, 'extend_hold adds to an active hold');
SELECT throws_ok(format($$SELECT keen.extend_hold('00000000-0000-4000-8000-00000030d001', %L, 1000)$$, :'dave_hold'),
  'KE001', NULL, 'extend_hold beyond the available balance raises KE001');

-- Figures and invariants at the end.
SELECT is((SELECT count(*) FROM keen.recompute_usage_stats('00000000-0000-4000-8000-00000030a001')), 1::bigint,
  'recompute_usage_stats(user): one day of alice''s figures');
SELECT is_empty($$SELECT * FROM keen.verify_ledger() WHERE user_id::text LIKE '00000000-0000-4000-8000-00000030%'$$,
  'verify_ledger: every balance equals its ledger sum, every invariant holds');
SELECT is_empty($$SELECT * FROM keen.verify_usage_stats() WHERE user_id::text LIKE '00000000-0000-4000-8000-00000030%'$$,
  'verify_usage_stats: every daily figure equals its recomputation');
SELECT is(keen.rebuild_usage_stats(), 0::bigint, 'rebuild_usage_stats() over every tenant has nothing to change');
-- A broken figure is found and repaired.
UPDATE keen.daily_usage_stats AS d SET credits_spent = d.credits_spent + 1
 WHERE d.user_id = '00000000-0000-4000-8000-00000030a001';
SELECT results_eq($$SELECT figure, recorded - expected FROM keen.verify_usage_stats()
                     WHERE user_id = '00000000-0000-4000-8000-00000030a001'$$,
                  $$VALUES ('credits_spent', 1::numeric)$$, 'verify_usage_stats reports a broken figure');
SELECT is(keen.rebuild_usage_stats(), 1::bigint, 'rebuild_usage_stats() repairs it (one row changed)');
UPDATE keen.credit_accounts AS a SET current_balance = a.current_balance + 1
 WHERE a.user_id = '00000000-0000-4000-8000-00000030b001';
SELECT results_eq($$SELECT invariant FROM keen.verify_ledger() WHERE user_id = '00000000-0000-4000-8000-00000030b001'$$,
                  $$VALUES ('balance_equals_ledger_sum')$$, 'verify_ledger reports a balance that is not its ledger sum');
UPDATE keen.credit_accounts AS a SET current_balance = a.current_balance - 1
 WHERE a.user_id = '00000000-0000-4000-8000-00000030b001';

-- The dashboard stays a coordinator materialized view over the distributed tables.
DO $$ BEGIN PERFORM set_config('role', 'keen_analytics', true); END $$;
SELECT lives_ok($$SELECT keen.refresh_dashboard_metrics()$$, 'refresh_dashboard_metrics runs on Citus (as keen_analytics)');
SELECT ok((SELECT sum(credits_sold) >= 188 FROM keen.dashboard_metrics),
  'the dashboard counts the purchases of every tenant');

SELECT * FROM finish();
ROLLBACK;
