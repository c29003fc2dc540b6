-- Agent sessions: lifecycle state machine, hierarchy and its limits, completion charging,
-- cancellation of descendants, session_tree, listing, the event log, connections and the
-- reaper, per tenant. One assertion per rule.
BEGIN;
SELECT plan(159);

-- ===== fixtures (as the owner) ===============================================
-- alice runs sessions and pays for them; bob is the other tenant.
INSERT INTO keen.users (id, email, username, password_hash) VALUES
  ('00000000-0000-4000-8000-0000000d0a01', 's-alice@example.com', 's-alice', repeat('a', 32)),
  ('00000000-0000-4000-8000-0000000d0b01', 's-bob@example.com', 's-bob', repeat('b', 32));
INSERT INTO keen.credit_accounts (user_id)
SELECT u.id FROM keen.users AS u WHERE u.username LIKE 's-%'
ON CONFLICT (user_id) DO NOTHING;
GRANT USAGE ON SCHEMA tap TO keen_app, keen_owner;
SET LOCAL client_min_messages = warning;

-- ===== structure =============================================================
SELECT has_function('keen', 'start_session', ARRAY['text', 'text', 'text', 'text', 'text'],
  'start_session(p_session_id, p_vision, p_working_directory, p_git_branch, p_parent_session_id) exists');
SELECT has_function('keen', 'update_session_progress', ARRAY['text', 'text', 'integer', 'integer', 'bigint', 'numeric'],
  'update_session_progress(p_session_id, p_phase, p_iterations, p_tool_calls, p_tokens, p_cost) exists');
SELECT has_function('keen', 'complete_session', ARRAY['text', 'boolean', 'numeric', 'text[]', 'text[]', 'text[]', 'jsonb', 'text'],
  'complete_session(p_session_id, p_success, p_total_cost, p_files_created, p_files_modified, p_files_deleted, p_completion_report, p_error_message) exists');
SELECT has_function('keen', 'cancel_session', ARRAY['text'], 'cancel_session(p_session_id) exists');
SELECT has_function('keen', 'session_tree', ARRAY['text'], 'session_tree(p_session_id) exists');
SELECT has_function('keen', 'open_connection', ARRAY['text', 'inet', 'text', 'text', 'text', 'text[]', 'text[]'],
  'open_connection(p_connection_id, p_client_ip, p_user_agent, p_client_type, p_session_id, p_subscribed_events, p_session_filters) exists');
SELECT function_returns('keen', 'start_session', ARRAY['text', 'text', 'text', 'text', 'text'], 'keen.agent_sessions',
  'start_session returns the agent_sessions row type');
SELECT function_returns('keen', 'complete_session', ARRAY['text', 'boolean', 'numeric', 'text[]', 'text[]', 'text[]', 'jsonb', 'text'],
  'keen.agent_sessions', 'complete_session returns the agent_sessions row type');
SELECT function_returns('keen', 'open_connection', ARRAY['text', 'inet', 'text', 'text', 'text', 'text[]', 'text[]'],
  'keen.websocket_connections', 'open_connection returns the websocket_connections row type');
SELECT is_definer('keen', 'reap_stale_connections', ARRAY['interval'], 'reap_stale_connections is SECURITY DEFINER (it crosses tenants)');
SELECT set_eq($$SELECT p.proname::text FROM pg_proc AS p
                  WHERE p.pronamespace = 'keen'::regnamespace AND p.prosecdef
                    AND (p.oid IN (SELECT t.tgfoid FROM pg_trigger AS t
                                    WHERE t.tgrelid IN ('keen.agent_sessions'::regclass, 'keen.session_events'::regclass,
                                                        'keen.websocket_connections'::regclass,
                                                        'keen.session_usage_queue'::regclass))
                         OR p.proname IN ('start_session', 'update_session_progress', 'complete_session',
                              'cancel_session', 'session_tree', 'list_sessions', 'list_session_events', 'open_connection',
                              'ping_connection', 'close_connection', 'prune_session_events'))$$,
  ARRAY['start_session', 'update_session_progress', 'complete_session', 'cancel_session', 'open_connection',
        'ping_connection', 'close_connection', 'tg_session_usage_queue__flush',
        'session_tree', 'list_sessions', 'list_session_events'],
  'the session functions are SECURITY DEFINER: the writers (keen_app writes no session table), the deferred stats flush, and since 0019 the readers (one connection user per transaction on Citus)');
SELECT ok(NOT EXISTS (SELECT FROM pg_proc AS p
                       WHERE p.pronamespace = 'keen'::regnamespace
                         AND p.proname IN ('start_session', 'complete_session', 'session_tree', 'reap_stale_connections',
                                           'append_session_event', 'sync_session_connections', 'track_session_usage')
                         AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)),
  'session functions pin search_path to pg_catalog, pg_temp (pg_temp last)');
SELECT function_privs_are('keen', 'complete_session', ARRAY['text', 'boolean', 'numeric', 'text[]', 'text[]', 'text[]', 'jsonb', 'text'],
  'keen_app', ARRAY['EXECUTE'], 'keen_app may execute complete_session');
SELECT function_privs_are('keen', 'reap_stale_connections', ARRAY['interval'], 'keen_app', '{}'::text[],
  'keen_app may not execute reap_stale_connections (housekeeping login only)');
SELECT function_privs_are('keen', 'prune_session_events', ARRAY['interval'], 'keen_app', '{}'::text[],
  'keen_app may not execute prune_session_events (operators only)');
SELECT function_privs_are('keen', 'reap_stale_connections', ARRAY['interval'], 'public', '{}'::text[],
  'PUBLIC may not execute reap_stale_connections');
SELECT ok(pg_get_functiondef('keen.append_session_event(keen.agent_sessions, text, jsonb)'::regprocedure) LIKE '%pg_notify(''keen_events'', '''')%',
  'append_session_event notifies keen_events (from the function, on the coordinator: no trigger)');
SELECT ok(pg_get_functiondef('keen.open_connection(text, inet, text, text, text, text[], text[])'::regprocedure) LIKE '%keen.sync_session_connections(%',
  'open_connection keeps agent_sessions.websocket_connections in step (no trigger)');
SELECT policies_are('keen', 'session_limits', ARRAY['select_all', 'owner_all'],
  'session_limits is readable by every tenant and written by the owner only');
SELECT table_privs_are('keen', 'session_limits', 'keen_app', ARRAY['SELECT'], 'keen_app only reads session_limits');

-- ===== as the owner: starting sessions =======================================
SET LOCAL ROLE keen_app;
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000d0a01';
SELECT results_eq(
  $$SELECT session_id, parent_session_id, session_depth, current_phase, execution_status, last_event_seq
      FROM keen.start_session(p_session_id => 'root', p_vision => 'build it', p_working_directory => '/w',
                              p_git_branch => 'main')$$,
  $$VALUES ('root', NULL::uuid, 0, 'EXPLORE', 'running', 1::bigint)$$,
  'start_session creates a running root session at depth 0 in phase EXPLORE with its first event');
SELECT results_eq(
  $$SELECT seq, event_type, payload->>'session_depth' FROM keen.session_events
     WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'root')$$,
  $$VALUES (1::bigint, 'session.started', '0')$$,
  'starting appends event 1 session.started to the session''s log');
SELECT results_eq(
  $$SELECT session_depth, parent_session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'root')
      FROM keen.start_session(p_session_id => 'child', p_vision => 'v', p_working_directory => '/w',
                              p_git_branch => 'b1', p_parent_session_id => 'root')$$,
  $$VALUES (1, true)$$,
  'a child names its parent by external id and sits at the parent''s depth + 1');
SELECT is((SELECT session_depth FROM keen.start_session(p_session_id => 'grandchild', p_vision => 'v',
            p_working_directory => '/w', p_git_branch => 'b2', p_parent_session_id => 'child')), 2,
  'a grandchild sits at depth 2');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'root', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b')$$,
  'KE009', NULL, 'a duplicate session id of the same tenant raises KE009');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'orphan', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'b', p_parent_session_id => 'nope')$$,
  'KE006', NULL, 'an unknown parent raises KE006');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'x', p_vision => NULL, p_working_directory => '/w', p_git_branch => 'b')$$,
  'KE013', NULL, 'a missing required argument raises KE013');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => '', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b')$$,
  'KE013', NULL, 'an empty session id raises KE013 at the call (not a raw 23514)');

-- ===== as the owner: hierarchy limits ========================================
RESET ROLE;
UPDATE keen.session_limits SET max_depth = 2, max_children = 2;
SET LOCAL ROLE keen_app;
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'too-deep', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'b', p_parent_session_id => 'grandchild')$$,
  'KE008', NULL, 'a child deeper than session_limits.max_depth raises KE008');
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'child-2', p_vision => 'v', p_working_directory => '/w',
                                           p_git_branch => 'b', p_parent_session_id => 'root')$$,
  'a second child is within max_children = 2');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'child-3', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'b', p_parent_session_id => 'root')$$,
  'KE008', NULL, 'a child beyond session_limits.max_children raises KE008');
RESET ROLE;
UPDATE keen.session_limits SET max_depth = NULL, max_children = NULL;
SET LOCAL ROLE keen_app;
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'child-3', p_vision => 'v', p_working_directory => '/w',
                                           p_git_branch => 'b', p_parent_session_id => 'root')$$,
  'NULL limits mean no limit');

-- ===== as the owner: progress ================================================
-- A reported cost is reserved on the session's hold before it is accepted: alice pays.
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 25.00)$$, 'alice buys 25.00 credits');
SELECT results_eq(
  $$SELECT current_phase, iteration_count, tool_calls_count, tokens_used, total_cost, last_event_seq
      FROM keen.update_session_progress(p_session_id => 'child', p_phase => 'PLAN', p_iterations => 1,
                                        p_tool_calls => 4, p_tokens => 1500, p_cost => 0.25)$$,
  $$VALUES ('PLAN', 1, 4, 1500::bigint, 0.250000::numeric, 2::bigint)$$,
  'progress moves the phase forward, adds the increments and numbers the next event');
SELECT results_eq(
  $$SELECT iteration_count, tool_calls_count, tokens_used, total_cost, current_phase
      FROM keen.update_session_progress(p_session_id => 'child', p_iterations => 2, p_tool_calls => 1,
                                        p_tokens => 500, p_cost => 0.125)$$,
  $$VALUES (3, 5, 2000::bigint, 0.375000::numeric, 'PLAN')$$,
  'counts are increments, and no phase keeps the current one');
SELECT results_eq(
  $$SELECT seq, event_type, payload->>'previous_phase', payload->>'current_phase', payload->>'tokens_used'
      FROM keen.session_events WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'child')
     ORDER BY seq$$,
  $$VALUES (1::bigint, 'session.started', NULL, 'EXPLORE', NULL),
           (2::bigint, 'session.progress', 'EXPLORE', 'PLAN', '1500'),
           (3::bigint, 'session.progress', 'PLAN', 'PLAN', '2000')$$,
  'each progress report appends the next event of the session, numbered without gaps');
SELECT lives_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_phase => 'PLAN')$$,
  'reporting the current phase again is allowed');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_phase => 'EXPLORE')$$,
  'KE007', NULL, 'a phase moving backward raises KE007');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_phase => 'BUILD')$$,
  'KE013', NULL, 'an unknown phase raises KE013');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_tokens => -1)$$,
  'KE013', NULL, 'a negative increment raises KE013');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_cost => -0.5)$$,
  'KE004', NULL, 'a negative cost raises KE004');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_cost => 'NaN')$$,
  'KE004', NULL, 'a NaN cost raises KE004');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_cost => 'Infinity')$$,
  'KE004', NULL, 'an infinite cost raises KE004');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_cost => 0.0000001)$$,
  'KE004', NULL, 'a cost with more than 6 decimals raises KE004');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'nope')$$,
  'KE006', NULL, 'progress of an unknown session raises KE006');

-- ===== as the owner: the original design's lifecycle =========================
-- With the 25.00 credits; start, report progress, complete at 3.75 with one created file.
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'life', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'main')$$,
  'the lifecycle session starts');
SELECT lives_ok($$SELECT keen.update_session_progress(p_session_id => 'life', p_phase => 'SUMMON', p_iterations => 2,
                                                      p_tool_calls => 7, p_tokens => 12000, p_cost => 1.5)$$,
  'the lifecycle session reports progress');
SELECT results_eq(
  $$SELECT execution_status, success, current_phase, total_cost, files_created, end_time IS NOT NULL
      FROM keen.complete_session(p_session_id => 'life', p_success => true, p_total_cost => 3.75,
                                 p_files_created => ARRAY['src/app.py'], p_completion_report => '{"ok": true}')$$,
  $$VALUES ('completed', true, 'COMPLETE', 3.750000::numeric, ARRAY['src/app.py'], true)$$,
  'completion records the status, the final cost, the created file and the end time');
SELECT is((SELECT current_balance FROM keen.credit_accounts), 21.2500::numeric, 'the balance is 25.00 - 3.75 = 21.25');
SELECT results_eq(
  $$SELECT transaction_type, amount, hold_id IS NOT NULL FROM keen.credit_transactions
     WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'life')$$,
  $$VALUES ('usage', -3.7500::numeric, true)$$,
  'exactly one ledger row, a usage of 3.75 capturing the session''s hold, is linked to the session by its uuid');
SELECT results_eq(
  $$SELECT credits_purchased, credits_spent FROM keen.daily_usage_stats$$,
  $$VALUES (25.0000::numeric, 3.7500::numeric)$$,
  'the day''s usage stats count the purchase and the session''s charge');
-- The session counters are added at commit (the usage queue's deferred trigger,
-- docs/analytics.md): fire it now to read the figures inside this test's transaction.
SET CONSTRAINTS keen._500_flush IMMEDIATE;
SELECT results_eq(
  $$SELECT sessions_started, sessions_completed, sessions_failed, tokens_used, tool_calls, total_cost
      FROM keen.daily_usage_stats$$,
  $$SELECT count(*)::integer, (count(*) FILTER (WHERE execution_status = 'completed'))::integer,
           (count(*) FILTER (WHERE execution_status = 'failed'))::integer,
           sum(tokens_used)::bigint, sum(tool_calls_count)::bigint, sum(total_cost)
      FROM keen.agent_sessions$$,
  'the day''s usage stats count every session started, the completed one, tokens, tool calls and cost');
SELECT is((SELECT sessions_completed FROM keen.daily_usage_stats), 1,
  'the lifecycle session is the day''s one completed session');
SET CONSTRAINTS ALL DEFERRED;
SELECT results_eq(
  $$SELECT seq, event_type, payload->>'charged' FROM keen.session_events
     WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'life') AND seq = 3$$,
  $$VALUES (3::bigint, 'session.completed', '3.7500')$$,
  'completion appends session.completed with the amount charged');
SELECT is((SELECT execution_status FROM keen.complete_session(p_session_id => 'life', p_success => true, p_total_cost => 3.75,
                                    p_files_created => ARRAY['src/app.py'], p_completion_report => '{"ok": true}')),
  'completed', 'completing again with the same arguments returns the row');
SELECT results_eq(
  $$SELECT (SELECT count(*) FROM keen.credit_transactions WHERE transaction_type = 'usage'),
           (SELECT current_balance FROM keen.credit_accounts),
           (SELECT last_event_seq FROM keen.agent_sessions WHERE session_id = 'life')$$,
  $$VALUES (1::bigint, 21.2500::numeric, 3::bigint)$$,
  'an idempotent retry charges nothing more and appends no event');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 'life', p_success => true, p_total_cost => 4)$$,
  'KE007', NULL, 'completing a completed session with other arguments raises KE007');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 'life', p_success => false, p_total_cost => 3.75,
                                               p_files_created => ARRAY['src/app.py'], p_completion_report => '{"ok": true}')$$,
  'KE007', NULL, 'a completed session cannot become failed');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'life', p_tokens => 1)$$,
  'KE007', NULL, 'a completed session refuses progress with KE007');
SELECT throws_ok($$SELECT keen.cancel_session('life')$$, 'KE007', NULL, 'a completed session cannot be cancelled');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'late-child', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'b', p_parent_session_id => 'life')$$,
  'KE007', NULL, 'a completed session starts no child');

-- ===== as the owner: charging variants =======================================
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'free', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b')$$,
  'a session that costs nothing starts');
SELECT results_eq(
  $$SELECT execution_status, success, error_message FROM keen.complete_session(p_session_id => 'free', p_success => false,
                                                                       p_total_cost => 0, p_error_message => 'gave up')$$,
  $$VALUES ('failed', false, 'gave up')$$,
  'an unsuccessful completion records failed and the error message');
SELECT is((SELECT count(*) FROM keen.credit_transactions
            WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'free')), 0::bigint,
  'a zero cost charges nothing');
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'tally', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b')$$,
  'a session charged from its progress reports starts');
SELECT lives_ok($$SELECT keen.update_session_progress(p_session_id => 'tally', p_cost => 0.00011)$$,
  'it reports a cost finer than the ledger''s 4 decimals');
SELECT lives_ok($$SELECT keen.complete_session(p_session_id => 'tally', p_success => true)$$,
  'it completes without p_total_cost');
SELECT is((SELECT amount FROM keen.credit_transactions
            WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'tally')),
  -0.0002::numeric, 'without p_total_cost the accumulated cost is charged, raised to 4 decimals');
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'held', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b')$$,
  'a session with a hold starts');
SELECT lives_ok($$SELECT keen.hold_credits(p_session_id => (SELECT id FROM keen.agent_sessions WHERE session_id = 'held'), p_amount => 2)$$,
  'its credits are held');
SELECT lives_ok($$SELECT keen.complete_session(p_session_id => 'held', p_success => true, p_total_cost => 2.5)$$,
  'the session with a hold completes at 2.5');
SELECT results_eq(
  $$SELECT amount, hold_id IS NOT NULL FROM keen.credit_transactions
     WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'held') ORDER BY entry_no$$,
  $$VALUES (-2.5000::numeric, true)$$,
  'completion extends the hold placed for the session to the final cost, then captures it: one ledger row');
SELECT results_eq(
  $$SELECT status, captured_amount FROM keen.credit_holds
     WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'held') AND status <> 'released'$$,
  $$VALUES ('captured', 2.5000::numeric)$$,
  'the hold is captured at the final cost, nothing of it stays active');
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'broke', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b')$$,
  'a session too costly for the balance starts');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 'broke', p_success => true, p_total_cost => 1000)$$,
  'KE001', NULL, 'completion that cannot be paid raises KE001');
SELECT is((SELECT execution_status FROM keen.agent_sessions WHERE session_id = 'broke'), 'running',
  'an unpaid completion changes nothing: charge and completion are one transaction');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 'broke', p_success => NULL)$$,
  'KE013', NULL, 'completion without p_success raises KE013');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 'broke', p_success => true, p_total_cost => -1)$$,
  'KE004', NULL, 'a negative total cost raises KE004');

-- ===== as the owner: cancellation ============================================
-- root ─ child ─ grandchild; root ─ child-2 (completed) ─ orphan-run; root ─ child-3
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'under-done', p_vision => 'v', p_working_directory => '/w',
                                           p_git_branch => 'b', p_parent_session_id => 'child-2')$$,
  'a grandchild starts under child-2');
SELECT lives_ok($$SELECT keen.complete_session(p_session_id => 'child-2', p_success => true, p_total_cost => 0)$$,
  'child-2 completes while its own child still runs');
SELECT lives_ok($$SELECT keen.hold_credits(p_session_id => (SELECT id FROM keen.agent_sessions WHERE session_id = 'grandchild'),
                                         p_amount => 2.00, p_idempotency_key => 'grandchild-hold')$$,
  'a hold is reserved for the running grandchild');
SELECT results_eq($$SELECT session_id, execution_status FROM keen.cancel_session('root')$$,
  $$VALUES ('root', 'cancelled')$$, 'cancel_session cancels the session');
SELECT results_eq(
  $$SELECT h.status, (SELECT held_amount FROM keen.credit_accounts)
      FROM keen.credit_holds AS h WHERE h.idempotency_key = 'grandchild-hold'$$,
  $$VALUES ('released', 0.0000::numeric)$$,
  'cancelling releases the holds of the cancelled sessions: nothing stays reserved, nothing is charged');
SELECT results_eq(
  $$SELECT session_id, execution_status, end_time IS NOT NULL FROM keen.agent_sessions
     WHERE session_id IN ('child', 'grandchild', 'child-2', 'child-3', 'under-done') ORDER BY session_id$$,
  $$VALUES ('child', 'cancelled', true), ('child-2', 'completed', true), ('child-3', 'cancelled', true),
           ('grandchild', 'cancelled', true), ('under-done', 'cancelled', true)$$,
  'every running descendant is cancelled, through finished ones too; finished ones stay as they are');
SELECT is((SELECT count(*) FROM keen.session_events WHERE event_type = 'session.cancelled'), 5::bigint,
  'one session.cancelled event per cancelled session');
SELECT is((SELECT execution_status FROM keen.cancel_session('root')), 'cancelled', 'cancelling a cancelled session returns it');
SELECT is((SELECT count(*) FROM keen.session_events WHERE event_type = 'session.cancelled'), 5::bigint,
  'a repeated cancel appends nothing');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_tokens => 1)$$,
  'KE007', NULL, 'a cancelled session refuses progress');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 'child', p_success => true)$$,
  'KE007', NULL, 'a cancelled session cannot complete');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'y', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'b', p_parent_session_id => 'root')$$,
  'KE007', NULL, 'a cancelled parent starts no child');
SELECT throws_ok($$SELECT keen.cancel_session('nope')$$, 'KE006', NULL, 'cancelling an unknown session raises KE006');

-- ===== as the owner: the database guards =====================================
-- keen_app writes no session table (tests_sql/12_attacker.sql); the guards hold for whoever
-- does, keen_owner included.
SET LOCAL ROLE keen_owner;
SELECT throws_ok($$UPDATE keen.agent_sessions SET parent_session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'grandchild')
                   WHERE session_id = 'child-3'$$,
  'KE013', NULL, 'a parent never changes, so no cycle can form');
SELECT throws_ok($$UPDATE keen.agent_sessions SET execution_status = 'running', end_time = NULL WHERE session_id = 'life'$$,
  'KE007', NULL, 'a finished session cannot be set running again, even directly');
SET LOCAL ROLE keen_app;

-- ===== as the owner: session_tree, 6 levels and 1,000 nodes ==================
-- Depths 0-4 branch 3 ways (1 + 3 + 9 + 27 + 81 = 121 nodes); the 879 leaves at depth 5
-- are spread over the 81 nodes of depth 4.
DO $$
DECLARE
  v_n integer := 1;
BEGIN
  PERFORM keen.start_session(p_session_id => 't0000', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b');
  FOR v_i IN 1..999 LOOP
    PERFORM keen.start_session(
      p_session_id => 't' || lpad(v_i::text, 4, '0'), p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b',
      p_parent_session_id => 't' || lpad((CASE WHEN v_i <= 120 THEN (v_i - 1) / 3 ELSE 40 + (v_i - 121) % 81 END)::text, 4, '0'));
  END LOOP;
END
$$;
SELECT results_eq(
  $$SELECT count(*), count(DISTINCT id), max(depth), min(depth) FROM keen.session_tree('t0000')$$,
  $$VALUES (1000::bigint, 1000::bigint, 5, 0)$$,
  'session_tree returns the whole tree of 1,000 sessions over 6 levels, each once');
SELECT results_eq(
  $$SELECT depth, count(*) FROM keen.session_tree('t0000') GROUP BY depth ORDER BY depth$$,
  $$VALUES (0, 1::bigint), (1, 3::bigint), (2, 9::bigint), (3, 27::bigint), (4, 81::bigint), (5, 879::bigint)$$,
  'each node is at its depth below the given session');
SELECT ok(
  (SELECT array_agg(t.id ORDER BY t.ord) FROM keen.session_tree('t0000') WITH ORDINALITY AS t(id, session_id, parent_session_id, depth, path, current_phase, execution_status, total_cost, tokens_used, ord))
  = (WITH RECURSIVE expected AS (
     SELECT s.id, ARRAY[s.start_seq] AS seqs FROM keen.agent_sessions s WHERE s.session_id = 't0000'
     UNION ALL
     SELECT c.id, e.seqs || c.start_seq FROM expected e JOIN keen.agent_sessions c ON c.parent_session_id = e.id)
   SELECT array_agg(expected.id ORDER BY expected.seqs) FROM expected),
  'the order is depth-first, each node before its subtree, siblings in start order (start_seq): one transaction started them all');
SELECT is(
  (SELECT count(*) FROM keen.session_tree('t0000') AS t
    WHERE t.path[array_length(t.path, 1)] <> t.session_id OR array_length(t.path, 1) <> t.depth + 1),
  0::bigint, 'each path runs from the given session down to the node');
SELECT results_eq(
  $$SELECT session_id, depth, path FROM keen.session_tree('t0013') ORDER BY depth, session_id LIMIT 2$$,
  $$VALUES ('t0013', 0, ARRAY['t0013']), ('t0040', 1, ARRAY['t0013', 't0040'])$$,
  'a subtree starts at depth 0 with its own session');
SELECT results_eq($$SELECT * FROM keen.session_tree('t0000')$$, $$SELECT * FROM keen.session_tree('t0000')$$,
  'the order is stable from call to call');
SELECT throws_ok($$SELECT * FROM keen.session_tree('nope')$$, 'KE006', NULL, 'the tree of an unknown session raises KE006');

-- ===== as the owner: listing =================================================
SELECT is((SELECT count(*) FROM keen.list_sessions(p_status => 'failed')), 1::bigint, 'list_sessions filters by status');
SELECT ok(
  (SELECT array_agg(id) FROM keen.list_sessions(p_limit => 1000))
  = (SELECT array_agg(x.id) FROM (SELECT id FROM keen.agent_sessions ORDER BY start_time DESC, id DESC LIMIT 1000) AS x),
  'list_sessions returns the caller''s sessions newest first (start_time, then id)');
SELECT ok(
  (SELECT array_agg(p.id) FROM (
     SELECT id FROM keen.list_sessions(p_limit => 7)
     UNION ALL
     SELECT id FROM keen.list_sessions(
       p_before_start_time => (SELECT start_time FROM keen.list_sessions(p_limit => 7) OFFSET 6),
       p_before_id => (SELECT id FROM keen.list_sessions(p_limit => 7) OFFSET 6), p_limit => 7)) AS p)
  = (SELECT array_agg(id) FROM keen.list_sessions(p_limit => 14)),
  'the keyset cursor continues the listing with no row twice and none skipped');
SELECT throws_ok($$SELECT * FROM keen.list_sessions(p_status => 'paused')$$, 'KE013', NULL, 'an unknown status raises KE013');
SELECT throws_ok($$SELECT * FROM keen.list_sessions(p_before_id => gen_random_uuid())$$, 'KE013', NULL,
  'half a cursor raises KE013');
SELECT throws_ok($$SELECT * FROM keen.list_sessions(p_limit => 0)$$, 'KE013', NULL, 'a page size of 0 raises KE013');

-- ===== as the owner: the event log ===========================================
SELECT is(
  (SELECT count(*) FROM keen.agent_sessions AS s
    WHERE s.last_event_seq <> (SELECT count(*) FROM keen.session_events AS e WHERE e.session_id = s.id)
       OR s.last_event_seq <> (SELECT coalesce(max(e.seq), 0) FROM keen.session_events AS e WHERE e.session_id = s.id)),
  0::bigint, 'every session''s log is numbered 1..last_event_seq without gaps');
SELECT is(
  (SELECT count(*) FROM (SELECT e.seq, lag(e.seq) OVER (PARTITION BY e.session_id ORDER BY e.id) AS prev
                           FROM keen.session_events AS e) AS x WHERE x.seq <> coalesce(x.prev, 0) + 1),
  0::bigint, 'within a session, event ids follow seq');
-- The replay itself (committed events, in id order, resumed after a cursor, concurrent
-- writers) is proved across transactions in tests_py/test_events.py and test_parallel_agents.py.
SELECT is((SELECT count(*) FROM keen.list_session_events(p_after_id => 0, p_limit => 10000)), 0::bigint,
  'list_session_events lists no event of a transaction still running (this test''s own): they are above the horizon');
SELECT ok(keen.session_events_waiting() AND keen.session_events_waiting(p_session_id => 'child'),
  'session_events_waiting() says committed-or-own events wait above the horizon, for the stream and for one session');
SELECT throws_ok($$SELECT * FROM keen.list_session_events(p_session_id => 'nope')$$, 'KE006', NULL,
  'the stream of an unknown session raises KE006');
SELECT throws_ok($$SELECT * FROM keen.list_session_events(p_after_id => -1)$$, 'KE013', NULL, 'a negative cursor raises KE013');

-- ===== as the owner: connections =============================================
SELECT results_eq(
  $$SELECT connection_status, client_type, subscribed_events, disconnected_at IS NULL,
           session_filters = ARRAY[(SELECT id FROM keen.agent_sessions WHERE session_id = 'life')]
      FROM keen.open_connection(p_connection_id => 'ws-1', p_client_ip => '10.0.0.1', p_user_agent => 'browser',
                                p_client_type => 'web', p_session_id => 'life',
                                p_subscribed_events => ARRAY['session.*'], p_session_filters => ARRAY['life'])$$,
  $$VALUES ('active', 'web', ARRAY['session.*'], true, true)$$,
  'open_connection records an active connection with its subscriptions and session filters');
SELECT lives_ok($$SELECT keen.open_connection(p_connection_id => 'ws-0', p_client_ip => '10.0.0.2', p_client_type => 'cli', p_session_id => 'life')$$,
  'a second connection follows the same session');
SELECT is((SELECT websocket_connections FROM keen.agent_sessions WHERE session_id = 'life'), ARRAY['ws-0', 'ws-1'],
  'the session lists its active connections, sorted');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'ws-1', p_client_ip => '10.0.0.1')$$,
  'KE009', NULL, 'a duplicate connection id raises KE009');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'ws-x', p_client_ip => '10.0.0.1', p_client_type => 'tv')$$,
  'KE013', NULL, 'an unknown client type raises KE013');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'ws-x', p_client_ip => '10.0.0.1', p_session_id => 'nope')$$,
  'KE006', NULL, 'following an unknown session raises KE006');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'ws-x', p_client_ip => '10.0.0.1', p_session_filters => ARRAY['life', 'nope'])$$,
  'KE006', NULL, 'a filter naming an unknown session raises KE006');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'ws-x', p_client_ip => '10.0.0.1', p_subscribed_events => ARRAY['DROP TABLE'])$$,
  'KE013', NULL, 'a subscription that is no event type pattern raises KE013');
SELECT is((SELECT connection_status FROM keen.ping_connection('ws-1')), 'active', 'ping_connection keeps an active connection alive');
SELECT results_eq($$SELECT connection_status, disconnected_at IS NOT NULL FROM keen.close_connection('ws-1')$$,
  $$VALUES ('closed', true)$$, 'close_connection closes it');
SELECT is((SELECT websocket_connections FROM keen.agent_sessions WHERE session_id = 'life'), ARRAY['ws-0'],
  'a closed connection leaves the session''s list');
SELECT is((SELECT connection_status FROM keen.close_connection('ws-1')), 'closed', 'closing again returns the closed row');
SELECT throws_ok($$SELECT keen.ping_connection('ws-1')$$, 'KE007', NULL, 'pinging a closed connection raises KE007');
SELECT throws_ok($$SELECT keen.ping_connection('nope')$$, 'KE006', NULL, 'pinging an unknown connection raises KE006');
SELECT throws_ok($$SELECT keen.reap_stale_connections('1 minute')$$, '42501', NULL, 'keen_app cannot run the reaper');
SELECT throws_ok($$SELECT keen.prune_session_events('1 day')$$, '42501', NULL, 'keen_app cannot prune events');

-- ===== as another tenant =====================================================
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-0000000d0b01';
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'b-child', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'b', p_parent_session_id => 'child-3')$$,
  'KE006', NULL, 'another tenant''s session cannot be a parent: KE006, as if it did not exist');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 't0001', p_tokens => 1)$$,
  'KE006', NULL, 'another tenant''s session takes no progress');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 't0001', p_success => true)$$,
  'KE006', NULL, 'another tenant''s session cannot be completed');
SELECT throws_ok($$SELECT keen.cancel_session('t0001')$$, 'KE006', NULL, 'another tenant''s session cannot be cancelled');
SELECT throws_ok($$SELECT * FROM keen.session_tree('t0000')$$, 'KE006', NULL, 'another tenant''s tree is not found');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'b-ws', p_client_ip => '10.0.0.9', p_session_id => 'life')$$,
  'KE006', NULL, 'a connection cannot follow another tenant''s session');
SELECT throws_ok($$SELECT keen.ping_connection('ws-0')$$, 'KE006', NULL, 'another tenant''s connection is not found');
SELECT hasnt_function('keen', 'lock_event_stream', ARRAY['uuid'],
  'there is no per-user event-stream lock a tenant could take (and hold) against another');
SELECT throws_ok($$SELECT FROM keen.users WHERE id = '00000000-0000-4000-8000-0000000d0b01' FOR NO KEY UPDATE$$, '42501', NULL,
  'nor lock a user row (the stream lock) directly, not even its own: keen_app has no UPDATE privilege');
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'root', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b')$$,
  'session ids are unique per tenant: bob may use alice''s id');
SELECT results_eq($$SELECT session_id FROM keen.list_sessions()$$, $$VALUES ('root')$$, 'bob lists only his own session');
SELECT ok(NOT EXISTS (SELECT FROM keen.list_session_events()) AND keen.session_events_waiting(),
  'bob''s stream holds his own event only, still waiting for this transaction to end');
SELECT is((SELECT count(*) FROM keen.session_events), 1::bigint, 'bob reads only his own event rows');

-- ===== without tenant context ================================================
SET LOCAL app.current_user_id = '';
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'z', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'b')$$,
  'KE010', NULL, 'start_session without a tenant raises KE010');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'root')$$, 'KE010', NULL,
  'update_session_progress without a tenant raises KE010');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 'root', p_success => true)$$, 'KE010', NULL,
  'complete_session without a tenant raises KE010');
SELECT throws_ok($$SELECT keen.cancel_session('root')$$, 'KE010', NULL, 'cancel_session without a tenant raises KE010');
SELECT throws_ok($$SELECT * FROM keen.session_tree('root')$$, 'KE010', NULL, 'session_tree without a tenant raises KE010');
SELECT throws_ok($$SELECT * FROM keen.list_sessions()$$, 'KE010', NULL, 'list_sessions without a tenant raises KE010');
SELECT throws_ok($$SELECT * FROM keen.list_session_events()$$, 'KE010', NULL, 'list_session_events without a tenant raises KE010');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'z', p_client_ip => '10.0.0.1')$$, 'KE010', NULL,
  'open_connection without a tenant raises KE010');
SELECT is((SELECT count(*) FROM keen.session_events), 0::bigint, 'without a tenant no event is visible');

-- ===== operators: reaper and retention =======================================
RESET ROLE;
UPDATE keen.websocket_connections SET last_ping_at = now() - interval '10 minutes' WHERE connection_id = 'ws-0';
-- The WebSocket server's housekeeping login: no table privilege, EXECUTE on the reaper only.
CREATE ROLE keen_test_ws_housekeeper NOLOGIN NOSUPERUSER NOBYPASSRLS;
GRANT USAGE ON SCHEMA keen, tap TO keen_test_ws_housekeeper;
GRANT EXECUTE ON FUNCTION keen.reap_stale_connections(interval) TO keen_test_ws_housekeeper;
SET LOCAL ROLE keen_test_ws_housekeeper;
SELECT is(keen.reap_stale_connections('5 minutes'), 1,
  'the housekeeping login (EXECUTE only) reaps the one connection silent for too long, across tenants');
SELECT throws_ok($$SELECT count(*) FROM keen.websocket_connections$$, '42501', NULL,
  'the housekeeping login cannot read connections itself');
RESET ROLE;
SELECT results_eq(
  $$SELECT connection_status, disconnected_at IS NOT NULL FROM keen.websocket_connections WHERE connection_id = 'ws-0'$$,
  $$VALUES ('stale', true)$$, 'a reaped connection is stale with its disconnection time');
SELECT is((SELECT websocket_connections FROM keen.agent_sessions WHERE session_id = 'life'), '{}'::text[],
  'a reaped connection leaves the session''s list');
SELECT is(keen.reap_stale_connections('5 minutes'), 0, 'reaping again finds nothing');
SELECT throws_ok($$SELECT keen.reap_stale_connections('0 seconds')$$, 'KE013', NULL, 'a non-positive idle time raises KE013');
UPDATE keen.session_events SET created_at = now() - interval '40 days'
 WHERE session_id = (SELECT id FROM keen.agent_sessions WHERE session_id = 'life');
SELECT is(keen.prune_session_events('30 days'), 3::bigint, 'prune_session_events deletes the events older than the retention');
SELECT is((SELECT last_event_seq FROM keen.agent_sessions WHERE session_id = 'life'), 3::bigint,
  'pruning keeps the session''s event numbering');
SELECT throws_ok($$SELECT keen.prune_session_events(NULL)$$, 'KE013', NULL, 'a missing retention raises KE013');

SELECT * FROM finish();
ROLLBACK;
